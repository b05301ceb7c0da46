"""Our messages and rating values as the adapter's requests: addresses, parcels and the
origin a carrier is asked to rate from or ship from."""

from __future__ import annotations

from collections.abc import Sequence

from oms.common.v1 import common_pb2

from oms_shipping.carrier_api.domain import Address, Parcel
from oms_shipping.carriers.domain import Origin
from oms_shipping.rating import cards as rating


def address_of(message: common_pb2.Address, *, residential: bool = False) -> Address:
    return Address(
        region_code=message.region_code,
        postal_code=message.postal_code,
        locality=message.locality,
        administrative_area=message.administrative_area,
        address_lines=tuple(message.address_lines),
        recipient=message.recipient,
        organization=message.organization,
        phone=message.phone,
        email=message.email,
        residential=residential,
    )


def origin_address(origin: Origin) -> Address:
    """The origin as the rate shop holds it in memory (no table read on the hot path)."""
    return Address(region_code=origin.country, postal_code=origin.postal_code,
                   locality=origin.locality, administrative_area=origin.subdivision,
                   address_lines=origin.address_lines)


def parcels_of(parcels: Sequence[rating.Parcel]) -> tuple[Parcel, ...]:
    return tuple(Parcel(p.weight_grams, p.length_mm, p.width_mm, p.height_mm,
                        p.declared_value) for p in parcels)
