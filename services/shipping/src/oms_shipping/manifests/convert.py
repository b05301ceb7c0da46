"""Manifests between their stored rows, their protobuf messages and their documents."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from oms.common.v1 import common_pb2
from oms.shipping.v1 import shipping_pb2
from oms_platform.values import timestamp
from sqlalchemy import Row

from oms_shipping.documents.domain import ManifestDocument, ManifestLine
from oms_shipping.labels.convert import address_message, date_message
from oms_shipping.labels.domain import label_name
from oms_shipping.manifests.domain import manifest_name


def manifest_message(row: Row[Any], label_ids: Sequence[UUID]) -> shipping_pb2.Manifest:
    return shipping_pb2.Manifest(
        name=manifest_name(row.id),
        carrier=row.carrier,
        node_id=row.node_id,
        ship_date=date_message(row.ship_date),
        labels=[label_name(label_id) for label_id in label_ids],
        parcel_count=row.parcel_count,
        total_weight=common_pb2.Weight(grams=row.total_weight_grams),
        create_time=timestamp(row.create_time),
    )


def manifest_document(row: Row[Any], label_rows: Sequence[Row[Any]]) -> ManifestDocument:
    lines = []
    for label in label_rows:
        to = address_message(label.destination)
        lines.append(ManifestLine(label.tracking_number, label.service_name or label.service_code,
                                  label.package, label.weight_grams,
                                  f"{to.region_code} {to.postal_code}"))
    return ManifestDocument(manifest_name(row.id), row.carrier, row.node_id, row.ship_date,
                            row.create_time, lines)
