from __future__ import annotations

from django.urls import path

from cds.smart.apis import callback_view, launch_view

urlpatterns = [
    path("smart/launch", launch_view, name="smart-launch"),
    path("smart/callback", callback_view, name="smart-callback"),
]
