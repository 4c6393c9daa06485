"""Notifications: customer e-mails (which cannot be unsent) and tickets for people."""

from __future__ import annotations

from typing import Any

from . import make_id, record


def send_email(to: str, template: str, data: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """Send a templated e-mail; returns the message id."""
    record("notify.send_email", context, to=to, template=template, data=data)
    return {"message_id": make_id("msg", to, template, data)}


def open_ticket(queue: str, subject: str, details: str = "", context: Any = None) -> dict[str, Any]:
    """Open a ticket for a person to follow up."""
    record("notify.open_ticket", context, queue=queue, subject=subject, details=details)
    return {"ticket_id": make_id("tkt", queue, subject)}
