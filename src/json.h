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

extern JsonbValue *json_parse_value(char *text, int len, char **error);
extern Jsonb *json_value_to_jsonb(JsonbValue *root);
extern Jsonb *json_parse(char *text, int len, char **error);
extern JsonbValue *json_node_get(JsonbValue *node, const char *key, JsonbValue *buf);
extern char *json_node_text(JsonbValue *v);
extern bool json_node_number(JsonbValue *v, Datum *numeric);
extern JsonbValue *json_get(JsonbContainer *c, const char *key, JsonbValue *buf);
extern JsonbContainer *json_get_container(JsonbContainer *c, const char *key);
extern JsonbContainer *json_get_path(JsonbContainer *c, const char *const *path);
extern char *json_get_string(JsonbContainer *c, const char *key);
extern char *json_path_string(JsonbContainer *c, const char *const *path);
extern bool json_get_bool(JsonbContainer *c, const char *key, bool dflt);
extern int	json_array_size(JsonbContainer *c);
extern JsonbContainer *json_array_container(JsonbContainer *c, int i);
extern Jsonb *json_without_keys(JsonbContainer *c, const char *const *keys);
extern int64 gid_to_id(const char *gid);

#endif							/* CONVERGE_JSON_H */
