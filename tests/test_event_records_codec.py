"""A block's events (System's Events, tuple[EventRecord, ...]) are encoded by one loop
(runtime.dispatch.encode_event_records): the same bytes as the generic record encoders give,
and they decode back to the same records."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st

from runtime import codec
from runtime.pallets import balances, payment, system
from runtime.types import DispatchError, EventRecord

accounts = st.binary(min_size=32, max_size=32)
balances_ = st.one_of(st.integers(0, 2**64 + 5), st.integers(0, 2**128 - 1))
weights = st.integers(0, 2**64 - 1)
events = st.one_of(
    st.builds(balances.Transfer, accounts, accounts, balances_),
    st.builds(balances.Endowed, accounts, balances_),
    st.builds(system.ExtrinsicSuccess, weights, balances_),
    st.builds(system.ExtrinsicFailed, st.builds(DispatchError, st.integers(0, 255), st.integers(0, 255),
                                                st.text(max_size=20)), weights, balances_),
    st.builds(system.NewAccount, accounts),
    st.builds(system.ParametersChanged),
    st.builds(payment.FeesDistributed, accounts, balances_, balances_),
)
records = st.lists(st.builds(EventRecord, st.one_of(st.none(), st.integers(0, 2**32 - 1)), events), max_size=30)


def _generic_encoding(items: tuple) -> bytes:
    encode_record = codec.encoder_for(EventRecord)
    return codec.pack([encode_record(record) for record in items])


@given(records)
@settings(max_examples=300)
def test_a_blocks_events_encode_as_the_generic_encoders_do(drawn):
    items = tuple(drawn)
    encoded = codec.encode(items, tuple[EventRecord, ...])
    assert encoded == _generic_encoding(items)
    assert codec.decode(tuple[EventRecord, ...], encoded) == items


def test_systems_events_storage_uses_the_one_loop_encoder():
    from runtime.dispatch import encode_event_records

    assert system.Events._encode is encode_event_records
