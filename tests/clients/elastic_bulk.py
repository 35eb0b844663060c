"""Ships ECS documents to KillKrill's /elastic endpoints with the official Elasticsearch
client (its `helpers.bulk`), as an application would ship them to Elasticsearch.

Usage: python elastic_bulk.py URL (api_key|basic) CREDENTIAL INDEX COUNT

Prints one JSON object: the version the client saw, what the bulk helper reported, and
what a bulk of refused actions (delete, update, a document without a message) reported.
The Rust test (tests/api/elastic.rs) reads the documents back through the JSON API.
"""

import json
import sys

from elasticsearch import Elasticsearch, helpers

LEVELS = ["info", "WARN", "error", "debug"]


def client(url, mode, credential):
    if mode == "api_key":
        # gzip request bodies too, as agents do.
        return Elasticsearch(url, api_key=credential, http_compress=True)
    return Elasticsearch(url, basic_auth=("agent", credential))


def documents(index, count):
    for i in range(count):
        yield {
            "_index": index,
            "_id": f"doc-{i}",
            "_source": {
                "@timestamp": f"2026-01-01T00:{i // 60 % 60:02d}:{i % 60:02d}.{i % 1000:03d}Z",
                "message": f"request {i}",
                "log": {"level": LEVELS[i % len(LEVELS)], "logger": "http"},
                "host": {"name": f"web-{i % 2}"},
                "service": {"name": "shop", "version": "1.2.3"},
                "http": {"request": {"method": "GET"}, "response": {"status_code": 200 + i % 5}},
                "tags": ["checkout", "eu"],
            },
        }


def main():
    url, mode, credential, index, count = sys.argv[1:6]
    es = client(url, mode, credential)
    info = es.info()
    health = es.cluster.health()
    exists = bool(es.indices.exists(index=index))
    ok, errors = helpers.bulk(es, documents(index, int(count)), chunk_size=200)
    refused_ok, refused = helpers.bulk(
        es,
        [
            {"_op_type": "delete", "_index": index, "_id": "doc-0"},
            {"_op_type": "update", "_index": index, "_id": "doc-1", "doc": {"message": "changed"}},
            {"_op_type": "create", "_index": index, "_source": {"msg_missing": True}},
        ],
        raise_on_error=False,
    )
    print(
        json.dumps(
            {
                "version": info["version"]["number"],
                "tagline": info["tagline"],
                "health": health["status"],
                "index_exists": exists,
                "ok": ok,
                "errors": errors,
                "refused_ok": refused_ok,
                "refused": [
                    {op: {"status": item["status"], "type": item["error"]["type"]}}
                    for entry in refused
                    for op, item in entry.items()
                ],
            }
        )
    )


if __name__ == "__main__":
    main()
