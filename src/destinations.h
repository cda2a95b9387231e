/*-------------------------------------------------------------------------
 *
 * destinations.h
 *	  Destination URLs and request signatures; the delivery engine.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CONVERGE_DESTINATIONS_H
#define CONVERGE_DESTINATIONS_H

extern char *converge_destination_url(const char *url);
extern const char *converge_destination_url_problem(const char *url, char **normal, const char **hint);
extern char *converge_signature_header(const char *secret, int64 t, const char *body, size_t body_len);

#endif							/* CONVERGE_DESTINATIONS_H */
