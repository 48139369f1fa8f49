"""One root error: a user catches any wechatbot failure with ``except WechatbotError``."""
from __future__ import annotations

import pytest

import wechatbot
from wechatbot import WechatbotError
from wechatbot.api import WeComAPIError, WeComNetworkError
from wechatbot.config import ConfigError, config_from_sections
from wechatbot.plugins import PluginLoadError, select
from wechatbot.store import StoreURLError, open_store
from wechatbot.wecom.crypto import AESKeyError, SignatureError, WeComCrypto, generate_aes_key
from wechatbot.wecom.messages import MessageParseError, parse_message


def test_root_is_exported_from_the_package() -> None:
    assert "WechatbotError" in wechatbot.__all__
    assert wechatbot.WechatbotError is WechatbotError


def test_a_config_error_is_caught_as_the_root_and_as_value_error() -> None:
    with pytest.raises(WechatbotError) as caught:
        config_from_sections({"nonsense": {}})
    assert isinstance(caught.value, ConfigError) and isinstance(caught.value, ValueError)


def test_a_store_url_error_is_caught_as_the_root_and_as_value_error() -> None:
    with pytest.raises(WechatbotError) as caught:
        open_store("ftp://example.invalid/")
    assert isinstance(caught.value, StoreURLError) and isinstance(caught.value, ValueError)


def test_a_plugin_error_is_caught_as_the_root_and_as_runtime_error() -> None:
    with pytest.raises(WechatbotError) as caught:
        select(["not-installed"], [], ["echo"])
    assert isinstance(caught.value, PluginLoadError) and isinstance(caught.value, RuntimeError)


def test_crypto_errors_are_caught_as_the_root() -> None:
    with pytest.raises(WechatbotError) as caught:
        WeComCrypto("token", "too-short", "corp")
    assert isinstance(caught.value, AESKeyError) and isinstance(caught.value, ValueError)
    crypto = WeComCrypto("token", generate_aes_key(), "corp")
    with pytest.raises(WechatbotError) as caught:
        crypto.decrypt_message("<xml><Encrypt>abcd</Encrypt></xml>", "0" * 40, "1", "n")
    assert isinstance(caught.value, SignatureError)


def test_a_message_error_is_caught_as_the_root() -> None:
    with pytest.raises(WechatbotError) as caught:
        parse_message("<xml><Content>no type</Content></xml>")
    assert isinstance(caught.value, MessageParseError)


def test_api_errors_are_caught_as_the_root() -> None:
    assert isinstance(WeComAPIError(60020, "not allow", "message/send"), WechatbotError)
    assert isinstance(WeComNetworkError("down"), WechatbotError)


def test_a_key_with_a_plus_says_which_character_is_wrong() -> None:
    key = generate_aes_key()
    key = key[:4] + "+" + key[5:]
    with pytest.raises(ConfigError) as caught:
        config_from_sections({"wecom": {"corp_id": "ww1", "token": "t" * 32, "encoding_aes_key": key}})
    message = str(caught.value)
    assert "[wecom] encoding_aes_key" in message and "character 5 is '+'" in message
    assert key not in message and "\n" not in message
