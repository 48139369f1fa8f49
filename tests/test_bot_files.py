"""The AI bot's encrypted files, downloaded from the fake WeCom API and decrypted on the way."""
from __future__ import annotations

import os

import pytest

from wechatbot.api.bot_files import download_bot_file
from wechatbot.api.hints import WeComNetworkError
from wechatbot.testing.fake_api import FakeWeComAPI
from wechatbot.wecom.bot_files import decrypt_bot_file, encrypt_bot_file
from wechatbot.wecom.crypto import DecryptError, generate_aes_key


@pytest.mark.parametrize("size", [0, 1, 31, 32, 33, 1000, 300_000])
def test_files_of_every_size_round_trip_in_any_chunking(size):
    key = generate_aes_key()
    data = os.urandom(size)
    sealed = encrypt_bot_file(data, key)
    assert len(sealed) % 32 == 0 and len(sealed) > size
    for chunk in (1, 7, 16, 4096, len(sealed)):
        pieces = [sealed[i:i + chunk] for i in range(0, len(sealed), chunk)]
        assert b"".join(decrypt_bot_file(pieces, key)) == data


def test_a_wrong_key_or_a_cut_file_is_refused():
    sealed = encrypt_bot_file(b"hello world", generate_aes_key())
    with pytest.raises(DecryptError):
        b"".join(decrypt_bot_file([sealed], generate_aes_key()))
    with pytest.raises(DecryptError, match="AES blocks"):
        b"".join(decrypt_bot_file([sealed[:-3]], generate_aes_key()))


def test_download_from_the_fake_api(tmp_path):
    key = generate_aes_key()
    data = os.urandom(700_000)
    with FakeWeComAPI() as fake:
        url = fake.add_bot_file(data, key)
        path = download_bot_file(url, key, tmp_path / "photo.jpg")
        assert path.read_bytes() == data
        temp = download_bot_file(url, key)
        assert temp.read_bytes() == data
        temp.unlink()
        with pytest.raises(DecryptError):
            download_bot_file(url, generate_aes_key(), tmp_path / "wrong.bin")
        assert not (tmp_path / "wrong.bin").exists() and not (tmp_path / "wrong.bin.part").exists()
        with pytest.raises(WeComNetworkError, match="HTTP 404"):
            download_bot_file(fake.url + "/aibot-files/gone", key, tmp_path / "gone.bin")
