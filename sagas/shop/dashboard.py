"""Dashboard: read-only fetches of a user's profile, orders and recommendations, and the page
that combines them. Nothing here changes anything (no ledger entries)."""

from __future__ import annotations

from typing import Any


def profile(user_id: str) -> dict[str, Any]:
    """The user's profile."""
    return {"user_id": user_id, "name": user_id.replace("_", " ").title(), "tier": "gold"}


def orders(user_id: str, limit: int = 10) -> dict[str, Any]:
    """The user's most recent orders."""
    return {
        "orders": [
            {"id": f"ord_{user_id}_{n}", "total": round(19.5 * n, 2)} for n in range(1, limit + 1)
        ]
    }


def rank(orders: list[dict[str, Any]], top: int = 3) -> dict[str, Any]:
    """The largest orders first."""
    ranked = sorted(orders, key=lambda order: (-order["total"], order["id"]))
    return {"top_orders": ranked[:top]}


def recommendations(user_id: str, count: int = 3) -> dict[str, Any]:
    """Products to suggest."""
    return {"products": [f"sku-{(len(user_id) * 7 + n) % 100:02d}" for n in range(count)]}


def build(
    profile: dict[str, Any], orders: dict[str, Any], recommendations: dict[str, Any]
) -> dict[str, Any]:
    """Combine the three fetches into the page model."""
    return {
        "title": f"Welcome back, {profile['name']}",
        "tier": profile["tier"],
        "top_orders": orders["top_orders"],
        "recommended": recommendations["products"],
    }
