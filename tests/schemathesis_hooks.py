"""Schemathesis hooks for `tests/schemathesis.sh` (loaded through SCHEMATHESIS_HOOKS).

JSON Schema calls `256.0` an integer, and generates it for `"type": "integer"`; serde's
integer types refuse it (`expires_in_days: invalid type: floating point`). No schema can
tell the two apart, so bodies carry integral numbers as integers, as clients write them.
"""

import schemathesis


def _integral(value):
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {key: _integral(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_integral(item) for item in value]
    return value


@schemathesis.hook
def map_body(context, body):
    return _integral(body)
