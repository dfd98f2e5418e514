"""Read-only admin view of the write-back outbox (what was sent to the EHR, and why it failed)."""

from __future__ import annotations

from django.contrib import admin

from cds.core.admin import ReadOnlyAdmin
from cds.writeback.models import OutboxMessage


@admin.register(OutboxMessage)
class OutboxMessageAdmin(ReadOnlyAdmin):
    list_display = ("pk", "key", "status", "attempts", "next_attempt_at", "delivered_at", "last_error", "created_at")
    list_filter = ("status",)
    search_fields = ("key",)
