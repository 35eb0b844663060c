#!/usr/bin/env bash
# What the databases alone cost for remote_write's rows, without killkrill: the ceiling a
# layout puts on samples/s whatever the server does. See benches/README.md, "Protocols".
#
#   bash benches/protocols/floor.sh
#
# The stream of benches/protocols/run.sh's remote_write part: SHARDS writers, each with
# its own SERIES series and SAMPLES samples of each a request, timestamps rising from
# request to request. The rows are made by the database itself (a recursive CTE on
# SQLite, generate_series on PostgreSQL), so nothing is parsed, bound or sent per row:
# a request costs its rows' insert and commit, and no more. Layouts, each in a fresh
# table (with its foreign key to a series table, as metric_samples has):
#   keyed      primary key (series_id, ts): metric_samples since migration 14
#   time       primary key (ts, series_id): a time-major head, appending
#   time+index the same with an index on (series_id, ts) for reads by series
#   bucket     primary key (bucket, series_id, ts), bucket = ts / BUCKET_MS (default 5 min):
#              series-major within a bucket of time, the buckets appending
#   blob       one row a request, its samples packed (16 bytes each) in a blob
# Each layout alone (samples), and keyed with the series' last values updated in the
# same transaction (keyed+last, what an ingest does). SQLite: one writer, WAL,
# synchronous=NORMAL, as killkrill opens it; cache_size as CACHE_KB (default 2000, the
# default killkrill runs with). PostgreSQL: pgbench, SHARDS clients, DURATION s.
#
# Environment: SHARDS=4 SERIES=500 SAMPLES=4 REQUESTS=400 (SQLite, a layout)
#   DURATION=10 (PostgreSQL, a layout)  BACKENDS="sqlite postgres"
#   PG_HOST=127.0.0.1 PG_PORT=5432 PG_USER=postgres  CACHE_KB=2000  LAYOUTS="keyed ..."
#   FK=1 (0: the samples tables without their foreign key to the series)
set -euo pipefail

SHARDS=${SHARDS:-4}
SERIES=${SERIES:-500}
SAMPLES=${SAMPLES:-4}
REQUESTS=${REQUESTS:-400}
DURATION=${DURATION:-10}
BACKENDS=${BACKENDS:-sqlite postgres}
PG_HOST=${PG_HOST:-127.0.0.1}
PG_PORT=${PG_PORT:-5432}
PG_USER=${PG_USER:-postgres}
CACHE_KB=${CACHE_KB:-2000}
BUCKET_MS=${BUCKET_MS:-300000}
FK=${FK:-1}
if [ "$FK" = 1 ]; then REFERENCES="REFERENCES series (id) ON DELETE CASCADE"; else REFERENCES=""; fi
LAYOUTS=${LAYOUTS:-keyed keyed+last time time+index bucket blob}
PER_REQUEST=$((SERIES * SAMPLES))
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

report() { # layout, requests, seconds
    awk -v l="$1" -v r="$2" -v s="$3" -v n="$PER_REQUEST" \
        'BEGIN { printf "| %-10s | %8d | %6.2f | %9.0f | %6.1f |\n", l, r, s, r * n / s, s * 1e6 / (r * n) }'
}

header() {
    echo
    echo "$1 ($SHARDS shards x $SERIES series x $SAMPLES samples a request)"
    echo
    echo "| layout     | requests | s      | samples/s | us/sample |"
    echo "|------------|----------|--------|-----------|-----------|"
}

sqlite_schema() { # layout
    echo "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;"
    echo "CREATE TABLE series (id INTEGER PRIMARY KEY, last_ts INTEGER, last_value REAL);"
    echo "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < $((SHARDS * SERIES)))"
    echo "  INSERT INTO series SELECT i, 0, 0 FROM s;"
    case $1 in
        keyed*) echo "CREATE TABLE samples (series_id INTEGER NOT NULL $REFERENCES, ts INTEGER NOT NULL, value REAL NOT NULL, bits INTEGER, PRIMARY KEY (series_id, ts)) WITHOUT ROWID;" ;;
        time) echo "CREATE TABLE samples (series_id INTEGER NOT NULL $REFERENCES, ts INTEGER NOT NULL, value REAL NOT NULL, bits INTEGER, PRIMARY KEY (ts, series_id)) WITHOUT ROWID;" ;;
        time+index) echo "CREATE TABLE samples (series_id INTEGER NOT NULL $REFERENCES, ts INTEGER NOT NULL, value REAL NOT NULL, bits INTEGER, PRIMARY KEY (ts, series_id)) WITHOUT ROWID; CREATE INDEX samples_series ON samples (series_id, ts);" ;;
        bucket) echo "CREATE TABLE samples (bucket INTEGER NOT NULL, series_id INTEGER NOT NULL $REFERENCES, ts INTEGER NOT NULL, value REAL NOT NULL, bits INTEGER, PRIMARY KEY (bucket, series_id, ts)) WITHOUT ROWID;" ;;
        blob) echo "CREATE TABLE samples (id INTEGER PRIMARY KEY, first_series INTEGER NOT NULL $REFERENCES, min_ts INTEGER NOT NULL, max_ts INTEGER NOT NULL, packed BLOB NOT NULL);" ;;
    esac
}

# One request of shard $2 at request number $3: its rows, in one transaction.
sqlite_request() { # layout shard number
    local first=$(($2 * SERIES + 1)) last=$((($2 + 1) * SERIES)) base=$(($3 * 60000))
    echo "BEGIN IMMEDIATE;"
    case $1 in
        blob) echo "INSERT INTO samples (first_series, min_ts, max_ts, packed) VALUES ($first, $base, $((base + SAMPLES * 15000)), randomblob($((PER_REQUEST * 16))));" ;;
        bucket) echo "WITH RECURSIVE s(i) AS (SELECT $first UNION ALL SELECT i + 1 FROM s WHERE i < $last),"
           echo "  k(j) AS (SELECT 0 UNION ALL SELECT j + 1 FROM k WHERE j < $((SAMPLES - 1)))"
           echo "  INSERT INTO samples (bucket, series_id, ts, value, bits) SELECT ($base + j * 15000) / $BUCKET_MS, i, $base + j * 15000, i * 0.5 + j, NULL FROM s, k WHERE true"
           echo "  ON CONFLICT (bucket, series_id, ts) DO UPDATE SET value = excluded.value, bits = excluded.bits;" ;;
        *) echo "WITH RECURSIVE s(i) AS (SELECT $first UNION ALL SELECT i + 1 FROM s WHERE i < $last),"
           echo "  k(j) AS (SELECT 0 UNION ALL SELECT j + 1 FROM k WHERE j < $((SAMPLES - 1)))"
           echo "  INSERT INTO samples (series_id, ts, value, bits) SELECT i, $base + j * 15000, i * 0.5 + j, NULL FROM s, k WHERE true"
           echo "  ON CONFLICT (series_id, ts) DO UPDATE SET value = excluded.value, bits = excluded.bits;" ;;
    esac
    if [ "$1" = keyed+last ]; then
        echo "UPDATE series SET last_ts = $((base + (SAMPLES - 1) * 15000)), last_value = id * 0.5 WHERE id BETWEEN $first AND $last;"
    fi
    echo "COMMIT;"
}

run_sqlite() {
    header "SQLite $(sqlite3 --version | cut -d' ' -f1), cache_size ${CACHE_KB} KiB"
    for layout in $LAYOUTS; do
        local db=$WORK/$layout.db
        sqlite_schema "$layout" | sqlite3 "$db" >/dev/null
        {
            echo "PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON; PRAGMA cache_size=-$CACHE_KB;"
            for ((n = 0; n < REQUESTS / SHARDS; n++)); do
                for ((shard = 0; shard < SHARDS; shard++)); do sqlite_request "$layout" "$shard" "$n"; done
            done
        } >"$WORK/load.sql"
        local start end
        start=$(date +%s.%N)
        sqlite3 "$db" <"$WORK/load.sql" >/dev/null
        end=$(date +%s.%N)
        report "$layout" "$REQUESTS" "$(echo "$end - $start" | bc -l)"
    done
}

pg() { psql -X -q -v ON_ERROR_STOP=1 -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" "$@"; }

run_postgres() {
    local db=kk_floor_$RANDOM
    pg -d postgres -c "CREATE DATABASE $db" >/dev/null
    header "PostgreSQL $(pg -d "$db" -Atc 'SHOW server_version' | cut -d' ' -f1), pgbench -c $SHARDS -T $DURATION"
    for layout in $LAYOUTS; do
        local table
        case $layout in
            keyed*) table="series_id bigint NOT NULL $REFERENCES, ts bigint NOT NULL, value double precision NOT NULL, bits bigint, PRIMARY KEY (series_id, ts)" ;;
            time) table="series_id bigint NOT NULL $REFERENCES, ts bigint NOT NULL, value double precision NOT NULL, bits bigint, PRIMARY KEY (ts, series_id)" ;;
            time+index) table="series_id bigint NOT NULL $REFERENCES, ts bigint NOT NULL, value double precision NOT NULL, bits bigint, PRIMARY KEY (ts, series_id)); CREATE INDEX ON samples (series_id, ts" ;;
            bucket) table="bucket bigint NOT NULL, series_id bigint NOT NULL $REFERENCES, ts bigint NOT NULL, value double precision NOT NULL, bits bigint, PRIMARY KEY (bucket, series_id, ts)" ;;
            blob) table="id bigserial PRIMARY KEY, first_series bigint NOT NULL $REFERENCES, min_ts bigint NOT NULL, max_ts bigint NOT NULL, packed bytea NOT NULL" ;;
        esac
        pg -d "$db" -c "SET client_min_messages = warning; DROP TABLE IF EXISTS samples; DROP TABLE IF EXISTS series;
            CREATE TABLE series (id bigint PRIMARY KEY, last_ts bigint, last_value double precision);
            INSERT INTO series SELECT i, 0, 0 FROM generate_series(1, $((SHARDS * SERIES))) i;
            DROP SEQUENCE IF EXISTS rounds; CREATE SEQUENCE rounds;
            CREATE TABLE samples ($table);" >/dev/null
        pg -d "$db" -c "VACUUM ANALYZE" >/dev/null
        # Each client is a shard: series client_id*SERIES+1..; a request is the next minute
        # of the stream (a sequence), its SAMPLES samples 15 s apart.
        {
            echo "\\set first :client_id * $SERIES + 1"
            echo "\\set last :client_id * $SERIES + $SERIES"
            echo "BEGIN;"
            case $layout in
                blob) echo "INSERT INTO samples (first_series, min_ts, max_ts, packed) SELECT :first, t, t + $SAMPLES * 15000, decode(repeat('ab', $((PER_REQUEST * 16))), 'hex') FROM (SELECT nextval('rounds') * 60000 AS t) c;" ;;
                bucket) echo "INSERT INTO samples (bucket, series_id, ts, value, bits) SELECT (t + j * 15000) / $BUCKET_MS, i, t + j * 15000, i * 0.5 + j, NULL FROM generate_series(:first, :last) i, generate_series(0, $((SAMPLES - 1))) j, (SELECT nextval('rounds') * 60000 AS t) c ON CONFLICT (bucket, series_id, ts) DO UPDATE SET value = excluded.value, bits = excluded.bits;" ;;
                *) echo "INSERT INTO samples (series_id, ts, value, bits) SELECT i, t + j * 15000, i * 0.5 + j, NULL FROM generate_series(:first, :last) i, generate_series(0, $((SAMPLES - 1))) j, (SELECT nextval('rounds') * 60000 AS t) c ON CONFLICT (series_id, ts) DO UPDATE SET value = excluded.value, bits = excluded.bits;" ;;
            esac
            if [ "$layout" = keyed+last ]; then
                echo "UPDATE series SET last_ts = currval('rounds') * 60000, last_value = id * 0.5 WHERE id BETWEEN :first AND :last;"
            fi
            echo "COMMIT;"
        } >"$WORK/pgbench.sql"
        local out
        out=$(PGHOST=$PG_HOST PGPORT=$PG_PORT PGUSER=$PG_USER pgbench -n -c "$SHARDS" -j "$SHARDS" -T "$DURATION" -f "$WORK/pgbench.sql" "$db" 2>&1)
        local tx
        tx=$(echo "$out" | sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p')
        report "$layout" "$tx" "$DURATION"
    done
    pg -d postgres -c "DROP DATABASE $db" >/dev/null
}

for backend in $BACKENDS; do "run_$backend"; done
