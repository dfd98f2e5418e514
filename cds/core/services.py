"""Create organisations (tenants)."""

from __future__ import annotations

from django.db import transaction

from cds.core.models import Organization


@transaction.atomic
def organization_get_or_create(*, slug: str, name: str = "") -> tuple[Organization, bool]:
    """Return the organisation ``slug`` and whether this call created it (named ``name`` or the slug).

    Raises ``django.core.exceptions.ValidationError`` for a slug that is not letters, digits, ``-``, ``_``.
    """
    existing = Organization.objects.filter(slug=slug).first()
    if existing is not None:
        return existing, False
    organization = Organization(slug=slug, name=name or slug)
    organization.full_clean()
    organization.save()
    return organization, True
