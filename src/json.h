/*-------------------------------------------------------------------------
 *
 * json.h
 *	  JSON from the network: parsed without throwing, read by path.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CONVERGE_JSON_H
#define CONVERGE_JSON_H

#include "utils/jsonb.h"

extern Jsonb *json_parse(char *text, int len, char **error);
extern JsonbValue *json_get(JsonbContainer *c, const char *key, JsonbValue *buf);
extern JsonbContainer *json_get_container(JsonbContainer *c, const char *key);
extern JsonbContainer *json_get_path(JsonbContainer *c, const char *const *path);
extern char *json_get_string(JsonbContainer *c, const char *key);
extern char *json_path_string(JsonbContainer *c, const char *const *path);
extern bool json_get_bool(JsonbContainer *c, const char *key, bool dflt);
extern bool json_get_number(JsonbContainer *c, const char *key, Datum *numeric);
extern int	json_array_size(JsonbContainer *c);
extern JsonbContainer *json_array_container(JsonbContainer *c, int i);
extern Jsonb *json_without_keys(JsonbContainer *c, const char *const *keys);
extern int64 gid_to_id(const char *gid);

#endif							/* CONVERGE_JSON_H */
