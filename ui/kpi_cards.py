"""KPI cards, four to a row: the Business page's (from the rollup) and the organisation page's
(computed under row-level security) are drawn by this one function."""

from __future__ import annotations

from collections.abc import Sequence

import streamlit as st

from monitoring_core.business.kpis import KpiValue

__all__ = ["card_value", "draw_cards"]


def card_value(value: float | None, spec_fmt: str) -> str:
    """A card's value in its KpiSpec format, `–` for none; `12.5 %` with a space."""
    if value is None:
        return "–"
    text = spec_fmt.format(value)
    return text.replace("%", " %") if text.endswith("%") else text


def draw_cards(cards: Sequence[KpiValue], days: int, *, reaches_today: bool) -> None:
    """The cards in rows of four; each delta compares `days` complete days with as many before
    and is coloured by whether the change is good (churn going up is red); today so far, when
    the range reaches it, is in the card's help only."""
    for row_start in range(0, len(cards), 4):
        for col, card in zip(st.columns(4), cards[row_start : row_start + 4], strict=False):
            with col:
                st.metric(
                    card.label,
                    card_value(card.value, card.fmt),
                    delta=None
                    if card.delta is None
                    else f"{card.delta * 100:+.1f} % vs prior {days} days",
                    delta_color="normal" if card.higher_is_better else "inverse",
                    help=f"Previous {days} days: {card_value(card.previous, card.fmt)}"
                    + (
                        f". Today so far (partial): {card_value(card.today, card.fmt)}"
                        if reaches_today
                        else ""
                    ),
                    border=True,
                )
