# converge: PGXS build.  `make && make install`, then `make installcheck`
# against a running server (test/run does all of it on a throwaway cluster).

EXTENSION = converge
MODULE_big = converge
OBJS = \
	src/converge.o \
	src/backfill.o \
	src/channels.o \
	src/delivery.o \
	src/destinations.o \
	src/event_payload.o \
	src/export_loader.o \
	src/hmac.o \
	src/http.o \
	src/incremental.o \
	src/ingest.o \
	src/json.o \
	src/order_mapping.o \
	src/shopify_client.o \
	src/store.o \
	src/sync.o \
	src/workers.o

DATA = sql/converge--0.1.0.sql
PGFILEDESC = "converge - Shopify orders and refunds as purchase events"

REGRESS = install store_handle base_url sales_channel channel_mappings \
	webhook_hmac oauth_hmac dump_restore json_parser sources sync_backfill sync_incremental sync_faults sync_config sync_crash \
	events events_exclusions events_upsell destinations delivery_faults delivery_crash schedule
REGRESS_OPTS = --dbname=contrib_regression

PG_CPPFLAGS = -Isrc
# -Wno-unused-parameter: PostgreSQL's own headers have unused parameters.
PG_CFLAGS = -Wall -Wextra -Werror -Wno-unused-parameter
SHLIB_LINK = -lcurl -lcrypto

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# PGXS does not track headers: every object depends on all of them.
$(OBJS): $(wildcard src/*.h)
