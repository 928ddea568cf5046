import itertools
from datetime import UTC, datetime

import msgspec
import pytest

from spectacles.models import (
    DISCORD_EPOCH_MS,
    Snowflake,
    SnowflakeGenerator,
    decode_model,
    encode,
)


def test_snowflake_example_from_the_docs_has_the_documented_fields() -> None:
    flake = Snowflake("175928847299117063")
    assert flake == 175928847299117063
    assert flake.created_at == datetime(2016, 4, 30, 11, 18, 25, 796000, tzinfo=UTC)
    assert flake.created_at.isoformat(timespec="milliseconds") == "2016-04-30T11:18:25.796+00:00"
    assert flake.timestamp_ms == 1462015105796
    assert flake.worker_id == 1
    assert flake.process_id == 0
    assert flake.increment == 7


def test_snowflake_from_int_equals_from_string_and_prints_as_digits() -> None:
    flake = Snowflake(175928847299117063)
    assert flake == Snowflake("175928847299117063")
    assert str(flake) == "175928847299117063"
    assert f"{flake}" == "175928847299117063"
    assert repr(flake) == "Snowflake(175928847299117063)"
    assert hash(flake) == hash(175928847299117063)


@pytest.mark.parametrize("bad", ["abc", "", "-1", "1.5", "0x10", str(1 << 64)])
def test_snowflake_rejects_bad_strings(bad: str) -> None:
    with pytest.raises(ValueError):
        Snowflake(bad)


@pytest.mark.parametrize("bad", [True, 1.0])
def test_snowflake_rejects_bool_and_float(bad: object) -> None:
    with pytest.raises(TypeError):
        Snowflake(bad)  # type: ignore[arg-type]


def test_from_parts_round_trips_every_field() -> None:
    flake = Snowflake.from_parts(1462015105796, worker_id=1, process_id=0, increment=7)
    assert flake == 175928847299117063
    other = Snowflake.from_parts(
        DISCORD_EPOCH_MS + 123_456, worker_id=31, process_id=17, increment=4095
    )
    assert (other.timestamp_ms, other.worker_id, other.process_id, other.increment) == (
        DISCORD_EPOCH_MS + 123_456,
        31,
        17,
        4095,
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"timestamp_ms": DISCORD_EPOCH_MS - 1},
        {"timestamp_ms": DISCORD_EPOCH_MS, "worker_id": 32},
        {"timestamp_ms": DISCORD_EPOCH_MS, "process_id": -1},
        {"timestamp_ms": DISCORD_EPOCH_MS, "increment": 4096},
    ],
)
def test_from_parts_rejects_out_of_range_fields(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        Snowflake.from_parts(**kwargs)


def test_generator_ids_carry_the_given_time_worker_and_process() -> None:
    gen = SnowflakeGenerator(worker_id=3, process_id=5)
    flake = gen.next(1_700_000_000_000)
    assert flake.timestamp_ms == 1_700_000_000_000
    assert (flake.worker_id, flake.process_id, flake.increment) == (3, 5, 0)
    assert gen.next(1_700_000_000_000).increment == 1


def test_generator_ids_are_unique_and_strictly_increasing_even_past_4096_per_ms() -> None:
    gen = SnowflakeGenerator()
    ids = [gen.next(1_700_000_000_000) for _ in range(5000)]
    assert all(a < b for a, b in itertools.pairwise(ids))
    assert len(set(ids)) == 5000
    # The 4097th id of one millisecond borrows the next millisecond instead of repeating.
    assert ids[4096].timestamp_ms == 1_700_000_000_001


def test_generator_stays_monotonic_when_the_clock_goes_back() -> None:
    gen = SnowflakeGenerator()
    first = gen.next(1_700_000_000_500)
    second = gen.next(1_700_000_000_000)
    assert second > first


def test_generator_defaults_to_now() -> None:
    gen = SnowflakeGenerator()
    before = datetime.now(UTC).timestamp() * 1000
    flake = gen.next()
    after = datetime.now(UTC).timestamp() * 1000
    assert before - 1 <= flake.timestamp_ms <= after + 1


def test_generator_rejects_bad_worker_id() -> None:
    with pytest.raises(ValueError, match="worker_id"):
        SnowflakeGenerator(worker_id=40)


class _Holder(msgspec.Struct):
    id: Snowflake
    ids: list[Snowflake]
    maybe: Snowflake | None = None


def test_snowflake_fields_decode_from_strings_or_ints_and_encode_as_strings() -> None:
    holder = decode_model(_Holder, b'{"id": "175928847299117063", "ids": [1, "2"], "maybe": null}')
    assert type(holder.id) is Snowflake
    assert [type(i) for i in holder.ids] == [Snowflake, Snowflake]
    assert holder.id.worker_id == 1
    assert encode(holder) == b'{"id":"175928847299117063","ids":["1","2"],"maybe":null}'


def test_snowflake_field_rejects_out_of_range_and_non_digit_strings() -> None:
    from spectacles.models import DecodeError

    for bad in ['"18446744073709551616"', '"-1"', '"1_000"', '" 12"', "1.5", "true", '"١٢"']:
        with pytest.raises(DecodeError, match=r"\$\.id"):
            decode_model(_Holder, f'{{"id": {bad}, "ids": []}}'.encode())
    top = decode_model(_Holder, b'{"id": "18446744073709551615", "ids": []}')
    assert top.id == (1 << 64) - 1


def test_many_distinct_snowflakes_decode_correctly_past_the_id_cache_size() -> None:
    # Goes through the id-string cache's fill-and-clear cycle several times.
    ids = list(range(10**17, 10**17 + 10_000))
    raw = encode({"id": "1", "ids": [str(i) for i in ids]})
    assert decode_model(_Holder, raw).ids == ids
    again = decode_model(_Holder, raw)
    assert again.ids == ids and all(type(i) is Snowflake for i in again.ids)
