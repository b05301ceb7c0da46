"""Which of a partner's channels a request is about: the one it names, or its only one."""

from __future__ import annotations

from oms_gateway.partners.domain import Partner
from oms_gateway.problems import Problem


def chosen_channel(partner: Partner, channel: str | None, *, action: str) -> str:
    """``channel`` if it is the partner's (else 403), or the partner's only channel when none
    is named (400 when it has several). ``action`` says what was refused: "list the orders
    of"."""
    if channel is None:
        if len(partner.channels) != 1:
            raise Problem(400, "Invalid argument", "name the channel", kind="invalid-argument",
                          extra={"errors": [{
                              "field": "channel",
                              "detail": "required: the partner has several channels"}]})
        channel = next(iter(partner.channels))
    if not partner.may_see_channel(channel):
        raise Problem(403, "Permission denied",
                      f"the partner may not {action} channel {channel!r}",
                      kind="permission-denied",
                      extra={"errors": [{"field": "channel",
                                         "detail": "not a channel of this partner"}]})
    return channel


def scoped_filter(channel: str, filter_: str) -> str:
    """The orders service's filter of a listing kept to ``channel``: its AIP-160 filters
    take no OR, NOT or parentheses, so no term the partner adds reaches beyond it."""
    return f'channel = "{channel}"' + (f" AND {filter_}" if filter_.strip() else "")
