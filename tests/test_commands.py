"""Command declarations, parsing, usage and help, without a host."""
from __future__ import annotations

import pytest

from wechatbot.commands import CommandBook, CommandError, UsageError, command, declare, marked_commands
from wechatbot.metadata import PluginMetadata


def weather(city: str, days: int = 1, context=None):
    """The forecast for a city."""
    return f"{city} {days}"


def roll(*sides: int):
    return sum(sides)


def book() -> CommandBook:
    return CommandBook([declare(weather, aliases=["天气"], plugin="wx"), declare(roll, help="Roll dice", plugin="dice")], prefix="/")


def test_signature_gives_typed_arguments_and_usage() -> None:
    cmd = declare(weather, aliases=["天气"])
    assert cmd.usage("/") == "/weather CITY [DAYS]" and cmd.help == "The forecast for a city."
    assert cmd.run(["Shenzhen", "3"], None, "ctx") == "Shenzhen 3"
    assert cmd.run(["Shenzhen"], None, None) == "Shenzhen 1"
    with pytest.raises(UsageError, match="DAYS must be a whole number, not 'x'"):
        cmd.run(["Shenzhen", "x"], None, None)
    with pytest.raises(UsageError, match="CITY is missing"):
        cmd.run([], None, None)
    assert declare(roll).run(["1", "2", "3"], None, None) == 6


def test_last_text_argument_takes_the_rest_of_the_line() -> None:
    def note(text: str):
        return text

    assert declare(note).run(["buy", "milk"], None, None) == "buy milk"


def test_bad_declarations_are_refused_with_the_function_named() -> None:
    def typed(x: list):
        pass

    def order(a: int = 1, b: int = 2, c: int = 3, *, d: int):
        pass

    with pytest.raises(CommandError, match="typed.*use str, int, float or bool"):
        declare(typed)
    with pytest.raises(CommandError, match="'d' must be positional"):
        declare(order)
    with pytest.raises(CommandError, match="declared by plugin 'a' and by plugin 'b'"):
        CommandBook([declare(weather, plugin="a"), declare(weather, plugin="b")])


def test_prefix_aliases_and_plain_text() -> None:
    commands = book()
    found = commands.read("/天气 北京 2")
    assert found.command.name == "weather" and found.words == ["北京", "2"]
    assert commands.read("weather Beijing") is None  # no prefix: not a command
    assert commands.read("/unknown x") is None
    assert commands.read('/weather "New York"').words == ["New York"]
    assert CommandBook([declare(weather)]).read("WEATHER x").command.name == "weather"


def test_help_lists_commands_and_explains_one() -> None:
    commands = book()
    assert commands.read("/help").command is None
    listing = commands.help_reply([])
    assert "/weather CITY [DAYS] — The forecast for a city." in listing and "/roll [SIDES...] — Roll dice" in listing
    about = commands.help_reply(["weather"], {"wx": PluginMetadata("Forecasts", "", "https://example.com/wx")})
    assert "usage: /weather CITY [DAYS]" in about and "also: /天气" in about and "Forecasts" in about
    plugin = commands.help_reply(["wx"], {"wx": PluginMetadata("Forecasts", "Ask me.", "https://example.com/wx")})
    assert plugin.splitlines()[0] == "wx: Forecasts" and "https://example.com/wx" in plugin
    assert "no command or plugin called 'nope'" in commands.help_reply(["nope"])
    assert commands.usage_reply(commands.find("weather"), "CITY is missing").startswith("CITY is missing\nusage: /weather")


def test_decorated_functions_are_found_on_the_plugin_module() -> None:
    import types

    module = types.ModuleType("fake_plugin")

    @command("hi", help="Say hi")
    def hello(message):
        return "hi " + message

    module.hello = hello
    module.other = lambda: None
    found = marked_commands(module, "greeter")
    assert [(c.name, c.plugin, c.help) for c in found] == [("hi", "greeter", "Say hi")]
    assert hello("x") == "hi x"  # still an ordinary function


# Through the host


@pytest.fixture
def wechatbot_plugins(kit_plugin):
    return {"kit": kit_plugin, "echo": __import__("wechatbot_echo")}


@pytest.fixture
def wechatbot_sections():
    return {"plugin:kit": {"Shenzhen": "晴"}}


def test_a_command_with_arguments_and_its_help(wecom) -> None:
    assert wecom.text("weather Shenzhen 2").content == "Shenzhen: 晴 x2"
    assert wecom.text("天气 Shenzhen").content == "Shenzhen: 晴 x1"
    assert wecom.text("weather Shenzhen soon").content == (
        "DAYS must be a whole number, not 'soon'\nusage: weather CITY [DAYS]\nThe forecast for a city.")
    listing = wecom.text("help").content
    assert "weather CITY [DAYS] — The forecast for a city." in listing and "book — Book a meeting room." in listing
    assert wecom.text("help weather").content.startswith("usage: weather CITY [DAYS]\nThe forecast for a city.\nalso: 天气")
    assert wecom.text("plain text").content == "plain handler"  # ordinary handlers keep working
    assert wecom.text("hello").content == "hello"  # and the next plugin after them


@pytest.mark.parametrize("wechatbot_sections", [{"wechatbot": {"command_prefix": "/"}}])
def test_a_prefix_makes_plain_words_plain(wecom) -> None:
    assert wecom.text("weather Shenzhen").content == "weather Shenzhen"  # echo
    assert wecom.text("/weather Shenzhen").content == "Shenzhen: no forecast x1"
    assert wecom.text("/help").content.splitlines()[1].startswith("/")


@pytest.mark.parametrize("wechatbot_sections", [{"wecom": {"type": "group_robot"},
                                                 "plugin:kit": {"Shenzhen": "晴", "weather.deny": "lisi"}}])
def test_commands_questions_and_refusals_in_a_group_robots_chat(wecom) -> None:
    assert wecom.text("weather Shenzhen").content == "Shenzhen: 晴 x1"  # sent as "@RobotA weather Shenzhen"
    assert wecom.text("weather Shenzhen", from_user="lisi").content == "Sorry, you are not allowed to use this."
    assert "weather CITY [DAYS]" in wecom.text("help").content
    assert wecom.text("book").content == "Which city?"
    assert wecom.text("Beijing", from_user="lisi").content == "Beijing"  # another member: not the answer
    assert wecom.text("Beijing").content == "Which day?"


@pytest.mark.parametrize("wechatbot_sections", [{"wecom": {"type": "aibot"}, "plugin:kit": {"Shenzhen": "晴"}}])
def test_commands_and_questions_with_the_ai_bot(wecom) -> None:
    assert wecom.text("天气 Shenzhen 3").content == "Shenzhen: 晴 x3"
    assert wecom.text("book", chat_type="group", chat_id="CHAT1").content == "Which city?"
    assert wecom.text("Beijing").content == "Beijing"  # the single chat is another chat
    assert wecom.text("Beijing", chat_type="group", chat_id="CHAT1").content == "Which day?"


def test_metadata_from_the_distribution_and_the_docstring() -> None:
    import types
    from importlib.metadata import distribution

    from wechatbot.metadata import plugin_metadata

    module = types.ModuleType("m", "Say hello.\n\nSend hi and get hello.\n\nDetails nobody reads in a chat.")
    assert plugin_metadata(None, module) == PluginMetadata("Say hello.", "Send hi and get hello.", "")
    echo = plugin_metadata(distribution("wechatbot-echo"), module)
    assert echo.description.startswith("wechatbot plugin: answer a text message") and echo.usage == "Send hi and get hello."
