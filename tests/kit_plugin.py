"""Plugins used by the host-level tests of commands, conversations, permissions and schedules.

A module of its own: answers to questions name their function by import
path, as they must when the answer lands on another worker.
"""
from __future__ import annotations

from wechatbot import command, hookimpl


@command("weather", aliases=["天气"])
def weather(city: str, days: int = 1, context=None):
    """The forecast for a city."""
    return f"{city}: {context.config.get(city, 'no forecast')} x{days}"


@command("book")
def book(message, context):
    """Book a meeting room."""
    return context.ask(message, "Which city?", then=book_city)


def book_city(answer, context, state):
    return context.ask(answer, "Which day?", then=book_day, state={"city": answer.content})


def book_day(answer, context, state):
    return f"booked {state['city']} on {answer.content}"


@command("count")
def count(message, context):
    """How many times you asked."""
    return f"count {context.storage.for_user(message).incr('n')}"


@hookimpl
def handle_message(message, context):
    if getattr(message, "content", "").startswith("plain"):
        return "plain handler"
    return None


def tick(context):
    return f"tick from {context.plugin_name}"


@hookimpl
def register_schedules(register, context):
    if "period" in context.config:
        register("tick", tick, every=float(context.config["period"]), to=context.config["to"].split(","))
