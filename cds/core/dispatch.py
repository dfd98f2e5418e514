"""Enqueue Celery tasks by name: the one way services start background work.

A service names the task instead of importing its ``tasks`` module, so tasks (which import the
services they wrap) and services never import each other. Every app's ``AppConfig.ready()`` imports
its tasks module, so the registry holds each task in the web process as well as in the worker.
"""

from __future__ import annotations

from typing import Any

from celery import current_app


def enqueue(name: str, *args: Any, countdown: float | None = None) -> None:
    """Send task ``name`` with positional ``args``, after ``countdown`` seconds when given.

    Raises KeyError for a task name no installed app registers.
    """
    task = current_app.tasks[name]
    if countdown is None:
        task.delay(*args)
    else:
        task.apply_async(args, countdown=countdown)
