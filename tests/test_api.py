"""The WeCom API client against a fake WeCom API that is a real HTTP server on 127.0.0.1."""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from wechatbot.testing import redis_test_url
from wechatbot.api import (
    MSGTYPES,
    MediaLimitError,
    WeComAPI,
    WeComAPIError,
    WeComNetworkError,
    client_for,
    safe_filename,
    webhook_send,
)
from wechatbot.config import config_from_sections
from wechatbot.wecom.crypto import generate_aes_key, generate_token
from wechatbot.testing.fake_api import FakeWeComAPI
from wechatbot.store import Store, open_store

AGENT_ID = 1000002
REDIS_URL = redis_test_url(1)


@pytest.fixture
def corp_id() -> str:
    return f"ww_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def secret() -> str:
    return "app-secret-" + uuid.uuid4().hex


@pytest.fixture
def fake(corp_id: str, secret: str) -> Iterator[FakeWeComAPI]:
    with FakeWeComAPI() as server:
        server.add_app(corp_id, secret, agent_id=AGENT_ID)
        yield server


def _redis_url_or_skip() -> str:
    redis = pytest.importorskip("redis")
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except redis.ConnectionError as exc:
        pytest.skip(f"no Redis server at 127.0.0.1:6379 ({exc})")
    return REDIS_URL


@pytest.fixture(params=["memory", "sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path, corp_id: str) -> Iterator[Store]:
    url = {"memory": lambda: "memory://", "sqlite": lambda: f"sqlite:///{tmp_path / 'store.db'}",
           "redis": _redis_url_or_skip}[request.param]()
    opened = open_store(url)
    yield opened
    if request.param == "redis":
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(match=f"*{corp_id}*"):
            client.delete(key)
    opened.close()


@pytest.fixture
def memory_store() -> Iterator[Store]:
    opened = open_store("memory://")
    yield opened
    opened.close()


@pytest.fixture
def api(fake: FakeWeComAPI, corp_id: str, secret: str, memory_store: Store) -> WeComAPI:
    return WeComAPI(corp_id, secret, AGENT_ID, memory_store, api_base=fake.url, app_name="main", backoff=0.01)


def _tokens_used(fake: FakeWeComAPI, path: str = "message/send") -> list[str]:
    return [r.query["access_token"] for r in fake.requests_to(path)]


# Access token


def test_token_is_fetched_once_and_shared_through_the_store(fake: FakeWeComAPI, corp_id: str, secret: str,
                                                            store: Store) -> None:
    first = WeComAPI(corp_id, secret, AGENT_ID, store, api_base=fake.url)
    second = WeComAPI(corp_id, secret, AGENT_ID, store, api_base=fake.url)
    first.send_text("zhangsan", "one")
    second.send_text("lisi", "two")
    first.send_text("wangwu", "three")
    assert fake.gettoken_calls == 1
    assert len(set(_tokens_used(fake))) == 1
    assert [m["text"]["content"] for m in fake.sent] == ["one", "two", "three"]


def test_each_app_of_a_corp_has_its_own_token(fake: FakeWeComAPI, corp_id: str, secret: str, store: Store) -> None:
    other_secret = "other-secret-" + uuid.uuid4().hex
    fake.add_app(corp_id, other_secret, agent_id=1000003)
    main = WeComAPI(corp_id, secret, AGENT_ID, store, api_base=fake.url)
    other = WeComAPI(corp_id, other_secret, 1000003, store, api_base=fake.url)
    # The fake checks that agentid belongs to the token's app, as WeCom does:
    # a cache keyed by corp id alone would send app 1000003's message with
    # the main app's token and fail with errcode 40056.
    main.send_text("zhangsan", "from main")
    other.send_text("zhangsan", "from other")
    main.send_text("zhangsan", "main again")
    assert fake.gettoken_calls == 2
    assert main.access_token() != other.access_token()
    assert [m["agentid"] for m in fake.sent] == [AGENT_ID, 1000003, AGENT_ID]


def test_cached_token_expires_before_wecom_expires_it(corp_id: str, secret: str, memory_store: Store) -> None:
    with FakeWeComAPI(expires_in=2) as fake:
        fake.add_app(corp_id, secret, agent_id=AGENT_ID)
        api = WeComAPI(corp_id, secret, AGENT_ID, memory_store, api_base=fake.url)
        api.send_text("zhangsan", "first")
        time.sleep(1.75)  # the token is still valid at WeCom for another 0.25 s
        api.send_text("zhangsan", "second")
        assert fake.gettoken_calls == 2
        assert len(fake.requests_to("message/send")) == 2  # no call was answered "expired"


def test_force_refresh_fetches_a_new_token(api: WeComAPI, fake: FakeWeComAPI) -> None:
    old = api.access_token()
    new = api.access_token(force_refresh=True)
    assert new != old
    assert api.access_token() == new
    assert fake.gettoken_calls == 2


def test_expired_token_is_refreshed_and_the_call_retried_once(api: WeComAPI, fake: FakeWeComAPI) -> None:
    api.send_text("zhangsan", "before")
    fake.expire_tokens()
    answer = api.send_text("zhangsan", "after")
    assert answer[0]["errcode"] == 0
    assert fake.gettoken_calls == 2
    first, rejected, retried = _tokens_used(fake)
    assert first == rejected != retried
    assert [m["text"]["content"] for m in fake.sent] == ["before", "after"]


@pytest.mark.parametrize("errcode", [40014, 42001, 42007, 42009])
def test_a_token_rejected_twice_gives_up_after_one_retry(api: WeComAPI, fake: FakeWeComAPI, errcode: int) -> None:
    fake.fail_next("message/send", errcode, times=2)
    with pytest.raises(WeComAPIError) as info:
        api.send_text("zhangsan", "hello")
    assert info.value.errcode == errcode
    assert len(fake.requests_to("message/send")) == 2
    assert fake.gettoken_calls == 2
    assert fake.sent == []


@pytest.mark.parametrize("errcode", [-1, 45009, 45033])
def test_busy_and_rate_limited_answers_are_retried(api: WeComAPI, fake: FakeWeComAPI, errcode: int) -> None:
    fake.fail_next("message/send", errcode, times=2)
    answer = api.send_text("zhangsan", "hello")
    assert answer[0]["errcode"] == 0
    assert len(fake.requests_to("message/send")) == 3
    assert len(fake.sent) == 1


def test_persistent_busy_gives_up_after_the_bound(fake: FakeWeComAPI, corp_id: str, secret: str,
                                                  memory_store: Store) -> None:
    api = WeComAPI(corp_id, secret, AGENT_ID, memory_store, api_base=fake.url, retries=3, backoff=0.01)
    fake.fail_next("message/send", -1, times=10)
    with pytest.raises(WeComAPIError) as info:
        api.send_text("zhangsan", "hello")
    assert info.value.errcode == -1
    assert len(fake.requests_to("message/send")) == 4  # the call and three retries


def test_busy_gettoken_is_retried(api: WeComAPI, fake: FakeWeComAPI) -> None:
    fake.fail_next("gettoken", -1)
    api.send_text("zhangsan", "hello")
    assert fake.gettoken_calls == 2
    assert len(fake.sent) == 1


def test_setup_error_carries_errcode_and_hint_but_no_secret(api: WeComAPI, fake: FakeWeComAPI, secret: str,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    token = api.access_token()
    fake.fail_next("message/send", 60020)
    with pytest.raises(WeComAPIError) as info:
        api.send_text("zhangsan", "hello")
    error = info.value
    assert (error.errcode, error.path) == (60020, "message/send")
    assert "trusted IP" in (error.hint or "")
    text = str(error)
    assert text.startswith("errcode 60020: not allow to access from your ip")
    assert "(hint: the server's IP is not in the app's trusted IPs" in text
    everything = text + repr(error) + repr(error.args) + repr(api) + caplog.text
    assert secret not in everything and token not in everything
    # urllib3 logs every URL at DEBUG; those lines are kept, with credentials hidden.
    assert "gettoken?corpid=" in caplog.text and "corpsecret=***" in caplog.text
    assert "access_token=***" in caplog.text


def test_wrong_secret_is_reported_without_the_secret(fake: FakeWeComAPI, corp_id: str, memory_store: Store) -> None:
    wrong = "wrong-secret-" + uuid.uuid4().hex
    api = WeComAPI(corp_id, wrong, AGENT_ID, memory_store, api_base=fake.url)
    with pytest.raises(WeComAPIError) as info:
        api.send_text("zhangsan", "hello")
    assert info.value.errcode == 40001
    assert "secret" in str(info.value) and wrong not in str(info.value)
    assert fake.sent == []


@pytest.mark.parametrize("errcode,words", [
    (40013, "corp_id"), (40056, "agent_id"), (301002, "agent_id"), (48002, "not permitted"),
    (81013, "visible range"), (82001, "invalid"), (41001, "no access token"),
])
def test_setup_errors_have_hints(api: WeComAPI, fake: FakeWeComAPI, errcode: int, words: str) -> None:
    fake.fail_next("message/send", errcode)
    with pytest.raises(WeComAPIError) as info:
        api.send_text("zhangsan", "hello")
    assert info.value.errcode == errcode
    assert words in (info.value.hint or "")


def test_unreachable_wecom_error_hides_the_token(api: WeComAPI, fake: FakeWeComAPI, corp_id: str, secret: str,
                                                 memory_store: Store) -> None:
    token = api.access_token()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"  # bound, not listening: connections are refused
        offline = WeComAPI(corp_id, secret, AGENT_ID, memory_store, api_base=dead, timeout=2)
        with pytest.raises(WeComNetworkError) as info:
            offline.send_text("zhangsan", "hello")
    assert "message/send" in str(info.value)
    assert token not in str(info.value) and secret not in str(info.value)


def test_app_without_secret_says_so(fake: FakeWeComAPI, corp_id: str, memory_store: Store) -> None:
    api = WeComAPI(corp_id, "", AGENT_ID, memory_store, api_base=fake.url, app_name="bot")
    with pytest.raises(Exception, match=r"\[wecom:bot\] has no secret"):
        api.send_text("zhangsan", "hello")
    assert fake.gettoken_calls == 0


# Concurrency: several processes, many threads, one SQLite store

_WORKER = textwrap.dedent("""
    import json, os, sys, threading
    from wechatbot.api import WeComAPI
    from wechatbot.store import open_store

    api_base, store_url, corp_id, tag, threads = sys.argv[1:6]
    api = WeComAPI(corp_id, os.environ["TEST_SECRET"], {agent}, open_store(store_url), api_base=api_base)
    start = threading.Barrier(int(threads) + 1)
    results = []

    def call(i):
        start.wait()
        try:
            api.send_text(f"user-{{tag}}-{{i}}", "hello")
            results.append("ok")
        except Exception as exc:
            results.append(repr(exc))

    workers = [threading.Thread(target=call, args=(i,)) for i in range(int(threads))]
    for w in workers:
        w.start()
    print("ready", flush=True)
    sys.stdin.readline()
    start.wait()
    for w in workers:
        w.join()
    print(json.dumps(results), flush=True)
""").format(agent=AGENT_ID)


def _run_workers(fake: FakeWeComAPI, store_url: str, corp_id: str, secret: str,
                 processes: int = 4, threads: int = 50) -> list[str]:
    """Start the processes, let all their threads call send_text at once, collect the outcomes."""
    env = {**os.environ, "TEST_SECRET": secret}
    procs = [
        subprocess.Popen([sys.executable, "-c", _WORKER, fake.url, store_url, corp_id, str(n), str(threads)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        for n in range(processes)
    ]
    try:
        for proc in procs:
            assert proc.stdout.readline().strip() == "ready"  # type: ignore[union-attr]
        for proc in procs:
            proc.stdin.write("go\n")  # type: ignore[union-attr]
            proc.stdin.flush()  # type: ignore[union-attr]
        results = []
        for proc in procs:
            out, _ = proc.communicate(timeout=30)
            results.extend(json.loads(out))
        return results
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()


def test_many_processes_fetch_one_token_when_the_cache_is_empty(fake: FakeWeComAPI, corp_id: str, secret: str,
                                                                tmp_path: Path) -> None:
    fake.set_delay(0.2, "gettoken")  # a slow gettoken keeps every other caller waiting for it
    results = _run_workers(fake, f"sqlite:///{tmp_path / 'shared.db'}", corp_id, secret)
    assert results == ["ok"] * 200
    assert fake.gettoken_calls == 1
    assert len(fake.sent) == 200


def test_many_processes_refresh_an_expired_token_once(fake: FakeWeComAPI, corp_id: str, secret: str,
                                                      tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    warm = open_store(url)
    WeComAPI(corp_id, secret, AGENT_ID, warm, api_base=fake.url).access_token()
    warm.close()
    fake.expire_tokens()
    fake.set_delay(0.2, "gettoken")
    results = _run_workers(fake, url, corp_id, secret)
    assert results == ["ok"] * 200
    assert fake.gettoken_calls == 2  # the warm-up and one refresh
    assert len(fake.sent) == 200


# message/send

EXAMPLE_BODIES = {
    "text": {"content": "你好 <a href=\"https://work.weixin.qq.com\">link</a>"},
    "image": {"media_id": "MEDIA_ID"},
    "voice": {"media_id": "MEDIA_ID"},
    "video": {"media_id": "MEDIA_ID", "title": "Title", "description": "Description"},
    "file": {"media_id": "MEDIA_ID"},
    "textcard": {"title": "领奖通知", "description": "<div class=\"gray\">2016年9月26日</div>",
                 "url": "https://example.com", "btntxt": "更多"},
    "news": {"articles": [{"title": "中秋节礼品领取", "url": "https://example.com", "picurl": "https://example.com/p.png"}]},
    "mpnews": {"articles": [{"title": "Title", "thumb_media_id": "MEDIA_ID", "content": "<p>body</p>"}]},
    "markdown": {"content": "**bold** <font color=\"info\">green</font>"},
    "miniprogram_notice": {"appid": "wx123", "page": "pages/index", "title": "会议室预订成功",
                           "content_item": [{"key": "会议室", "value": "402"}]},
    "template_card": {"card_type": "text_notice", "main_title": {"title": "欢迎使用企业微信"},
                      "card_action": {"type": 1, "url": "https://example.com"}},
}


def test_every_msgtype_has_an_example() -> None:
    assert set(EXAMPLE_BODIES) == set(MSGTYPES)


@pytest.mark.parametrize("msgtype", MSGTYPES)
def test_send_every_msgtype(api: WeComAPI, fake: FakeWeComAPI, msgtype: str) -> None:
    answer = api.send(msgtype, EXAMPLE_BODIES[msgtype], touser="zhangsan")
    assert answer["errcode"] == 0 and answer["msgid"]
    assert fake.sent == [{"touser": "zhangsan", "msgtype": msgtype, msgtype: EXAMPLE_BODIES[msgtype],
                          "agentid": AGENT_ID}]
    assert "\\u" not in fake.requests_to("message/send")[0].body.decode()


def test_send_recipients_and_options(api: WeComAPI, fake: FakeWeComAPI) -> None:
    api.send("text", {"content": "hi"}, touser=["zhangsan", "lisi"], toparty=[1, 2], totag="7",
             safe=1, enable_duplicate_check=True, duplicate_check_interval=600, enable_id_trans=True)
    assert fake.sent == [{
        "touser": "zhangsan|lisi", "toparty": "1|2", "totag": "7", "msgtype": "text", "text": {"content": "hi"},
        "safe": 1, "enable_id_trans": 1, "enable_duplicate_check": 1, "duplicate_check_interval": 600,
        "agentid": AGENT_ID,
    }]


def test_send_checks_its_arguments(api: WeComAPI, fake: FakeWeComAPI) -> None:
    with pytest.raises(ValueError, match="touser, toparty or totag"):
        api.send("text", {"content": "hi"})
    with pytest.raises(ValueError, match="unknown msgtype 'sms'"):
        api.send("sms", {"content": "hi"}, touser="zhangsan")
    assert fake.requests_to("message/send") == []


def test_send_message_keeps_an_explicit_agentid(fake: FakeWeComAPI, corp_id: str, secret: str,
                                                memory_store: Store) -> None:
    api = WeComAPI(corp_id, secret, None, memory_store, api_base=fake.url)
    api.send_message({"touser": "zhangsan", "msgtype": "text", "agentid": "1000002", "text": {"content": "x"}})
    assert fake.sent[0]["agentid"] == "1000002"


def test_long_text_is_sent_in_parts_on_character_boundaries(api: WeComAPI, fake: FakeWeComAPI) -> None:
    lines = [f"第{i}行：状态正常 ✅ emoji 👍🏽 and some ASCII to pad the line out" for i in range(80)]
    content = "\n".join(lines)
    assert len(content.encode("utf-8")) > 3 * 2048
    answers = api.send_text("zhangsan", content)
    parts = [m["text"]["content"] for m in fake.sent]
    assert len(answers) == len(parts) >= 4
    assert "".join(parts) == content
    assert all(len(p.encode("utf-8")) <= 2048 for p in parts)
    assert all(p.endswith("\n") for p in parts[:-1])  # split after whole lines


def test_update_template_card(api: WeComAPI, fake: FakeWeComAPI) -> None:
    card = {"card_type": "button_interaction", "main_title": {"title": "审批"}, "task_id": "task-1",
            "button_list": [{"text": "同意", "key": "yes"}]}
    code = api.send("template_card", card, touser="zhangsan")["response_code"]
    answer = api.update_template_card({"userids": ["zhangsan"], "response_code": code,
                                       "button": {"replace_name": "已同意"}})
    assert answer["errcode"] == 0
    assert fake.card_updates == [{"userids": ["zhangsan"], "response_code": code,
                                  "button": {"replace_name": "已同意"}, "agentid": AGENT_ID}]


def test_get_and_post_reach_any_api(api: WeComAPI, fake: FakeWeComAPI) -> None:
    answer = api.post("message/send", {"touser": "zhangsan", "msgtype": "text", "agentid": AGENT_ID,
                                       "text": {"content": "raw"}})
    assert answer["errcode"] == 0 and fake.sent[0]["text"]["content"] == "raw"
    with pytest.raises(WeComAPIError) as info:
        api.get("department/simplelist", userid="zhangsan")  # the fake does not serve it
    assert info.value.errcode == 404
    request = fake.requests_to("department/simplelist")[0]
    assert request.query["userid"] == "zhangsan" and request.query["access_token"] == api.access_token()


# Webhook


def test_webhook_send(fake: FakeWeComAPI) -> None:
    key = str(uuid.uuid4())
    fake.add_webhook(key)
    payload = {"msgtype": "markdown", "markdown": {"content": "部署完成 **ok**"}}
    assert webhook_send(key, payload, api_base=fake.url)["errcode"] == 0
    assert fake.webhook_sent == [(key, payload)]


def test_webhook_with_a_wrong_key_hides_the_key(fake: FakeWeComAPI) -> None:
    key = str(uuid.uuid4())
    with pytest.raises(WeComAPIError) as info:
        webhook_send(key, {"msgtype": "text", "text": {"content": "x"}}, api_base=fake.url)
    assert info.value.errcode == 93000
    assert "webhook key" in str(info.value) and key not in str(info.value)


# media/get


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_media_to_a_file_path(api: WeComAPI, fake: FakeWeComAPI, tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    fake.add_media("MEDIA", data, filename="photo.jpg", content_type="image/jpeg")
    target = tmp_path / "out.bin"
    got = api.get_media("MEDIA", target)
    assert (got.path, got.filename, got.size, got.content_type) == (target, "photo.jpg", len(data), "image/jpeg")
    assert _sha256(target.read_bytes()) == _sha256(data)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_media_streamed_from_disk_into_a_directory(api: WeComAPI, fake: FakeWeComAPI, tmp_path: Path) -> None:
    source = tmp_path / "source.bin"
    source.write_bytes(os.urandom(2 * 1024 * 1024))
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    fake.add_media("MEDIA", source, filename="报告 2024.pdf", content_type="application/pdf")
    got = api.get_media("MEDIA", downloads)
    assert got.path == downloads / "报告 2024.pdf"
    assert _sha256(got.path.read_bytes()) == _sha256(source.read_bytes())


def test_media_to_a_file_object(api: WeComAPI, fake: FakeWeComAPI) -> None:
    data = os.urandom(100_000)
    fake.add_media("MEDIA", data)
    buffer = io.BytesIO()
    got = api.get_media("MEDIA", buffer)
    assert buffer.getvalue() == data
    assert (got.path, got.size, got.filename) == (None, len(data), "MEDIA")


def test_broken_download_resumes_with_range(api: WeComAPI, fake: FakeWeComAPI, tmp_path: Path) -> None:
    data = os.urandom(4 * 1024 * 1024)
    fake.add_media("MEDIA", data, filename="big.bin", cut_after=len(data) // 2)
    got = api.get_media("MEDIA", tmp_path / "big.bin")
    assert _sha256(got.path.read_bytes()) == _sha256(data)
    first, resumed = fake.requests_to("media/get")
    assert "Range" not in first.headers
    offset = int(resumed.headers["Range"].removeprefix("bytes=").rstrip("-"))
    assert 0 < offset <= len(data) // 2


def test_a_download_that_keeps_breaking_gives_up_and_leaves_nothing(fake: FakeWeComAPI, corp_id: str,
                                                                   secret: str, memory_store: Store,
                                                                   tmp_path: Path) -> None:
    api = WeComAPI(corp_id, secret, AGENT_ID, memory_store, api_base=fake.url, resume_attempts=2)
    fake.add_media("MEDIA", os.urandom(1024 * 1024), cut_after=100_000, cut_times=10)
    with pytest.raises(WeComNetworkError, match="kept breaking"):
        api.get_media("MEDIA", tmp_path)
    assert len(fake.requests_to("media/get")) == 3  # the download and two resumes
    assert list(tmp_path.iterdir()) == []


def test_too_large_media_is_fetched_in_ranges(api: WeComAPI, fake: FakeWeComAPI, tmp_path: Path) -> None:
    api.range_chunk = 1024 * 1024
    data = os.urandom(3 * 1024 * 1024 + 5)
    fake.add_media("MEDIA", data, require_range=True)
    got = api.get_media("MEDIA", tmp_path / "out")
    assert _sha256(got.path.read_bytes()) == _sha256(data)
    ranges = [r.headers.get("Range") for r in fake.requests_to("media/get")]
    assert ranges == [None, "bytes=0-1048575", "bytes=1048576-2097151", "bytes=2097152-3145727",
                      "bytes=3145728-4194303"]


def test_json_error_instead_of_a_file_is_raised_and_leaves_nothing(api: WeComAPI, tmp_path: Path) -> None:
    with pytest.raises(WeComAPIError) as info:
        api.get_media("NO-SUCH-MEDIA", tmp_path)
    assert info.value.errcode == 40007
    assert list(tmp_path.iterdir()) == []


def test_media_after_token_expiry(api: WeComAPI, fake: FakeWeComAPI, tmp_path: Path) -> None:
    fake.add_media("MEDIA", b"0123456789")
    api.access_token()
    fake.expire_tokens()
    assert api.get_media("MEDIA", tmp_path / "x").path.read_bytes() == b"0123456789"
    assert fake.gettoken_calls == 2


@pytest.mark.parametrize("disposition", [
    b'attachment; filename="../../etc/passwd"',
    b'attachment; filename="a/b"',
    b'attachment; filename=".."',
    b'attachment; filename="."',
    b'attachment; filename="..\\\\..\\\\windows\\\\evil.exe"',
    b'attachment; filename="evil\x00.txt"',
    b'attachment; filename="line\x1bbreak\x7f.txt"',
    b"attachment; filename*=UTF-8''..%2F..%2Fetc%2Fcron.d%2Fx",
    b"attachment; filename*=UTF-8''%00%2E%2E",
    b'attachment; filename="' + b"A" * 5000 + b'.jpg"',
    b'attachment; filename="' + "长".encode() * 3000 + b'.jpg"',
    b'attachment; filename=""',
    b"attachment",
])
def test_hostile_file_names_stay_inside_the_directory(api: WeComAPI, fake: FakeWeComAPI, tmp_path: Path,
                                                      disposition: bytes) -> None:
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    fake.add_media("MEDIA_1", b"payload", content_disposition=disposition)
    got = api.get_media("MEDIA_1", downloads)
    assert got.path is not None and got.path.parent == downloads
    assert list(downloads.iterdir()) == [got.path]
    assert list(tmp_path.iterdir()) == [downloads]
    name = got.path.name
    assert name not in (".", "..") and not name.startswith(".")
    assert not any(ch in name for ch in "/\\\x00\x1b\x7f")
    assert len(name.encode()) <= 200
    assert got.path.read_bytes() == b"payload"


def test_file_name_forms(api: WeComAPI, fake: FakeWeComAPI, tmp_path: Path) -> None:
    fake.add_media("M1", b"123456", content_disposition="attachment; filename*=UTF-8''%E6%8A%A5%E5%91%8A.pdf")
    fake.add_media("M2", b"123456", content_disposition='attachment; filename="图.png"'.encode("utf-8"))
    fake.add_media("M3", b"123456", content_disposition="attachment; filename=plain name.txt")
    fake.add_media("M4", b"123456", content_type="image/png", content_disposition="inline")
    names = [api.get_media(m, tmp_path).path.name for m in ("M1", "M2", "M3", "M4")]
    assert names == ["报告.pdf", "图.png", "plain name.txt", "M4.png"]


def test_same_name_twice_does_not_overwrite(api: WeComAPI, fake: FakeWeComAPI, tmp_path: Path) -> None:
    fake.add_media("A", b"first file", filename="same.txt")
    fake.add_media("B", b"second file", filename="same.txt")
    first, second = api.get_media("A", tmp_path), api.get_media("B", tmp_path)
    assert (first.path.name, second.path.name) == ("same.txt", "same-1.txt")
    assert (first.path.read_bytes(), second.path.read_bytes()) == (b"first file", b"second file")


def test_max_bytes_stops_the_download_and_removes_the_part(api: WeComAPI, fake: FakeWeComAPI,
                                                           tmp_path: Path) -> None:
    fake.add_media("BIG", os.urandom(1024 * 1024))
    with pytest.raises(MediaLimitError, match="max_bytes=1000"):
        api.get_media("BIG", tmp_path / "big.bin", max_bytes=1000)
    with pytest.raises(MediaLimitError):
        api.get_media("BIG", tmp_path, max_bytes=1000)
    buffer = io.BytesIO(b"kept")
    buffer.seek(4)
    with pytest.raises(MediaLimitError):
        api.get_media("BIG", buffer, max_bytes=1000)
    assert list(tmp_path.iterdir()) == []
    assert buffer.getvalue() == b"kept"
    assert api.get_media("BIG", tmp_path / "ok.bin", max_bytes=1024 * 1024).size == 1024 * 1024


def test_safe_filename() -> None:
    assert safe_filename("../../etc/passwd") == "passwd"
    assert safe_filename("..", fallback="MEDIA.jpg") == "MEDIA.jpg"
    assert safe_filename(".bashrc") == "bashrc"
    assert safe_filename('a<b>c:d"e|f?g*h.txt') == "a_b_c_d_e_f_g_h.txt"
    assert safe_filename("\u202eexe.txt") == "exe.txt"  # a right-to-left override hides the real extension
    assert safe_filename(None, fallback="../..") == "media"
    long = safe_filename("名" * 300 + ".jpeg")
    assert long.endswith(".jpeg") and len(long.encode()) <= 200


# media/upload


def test_upload_then_download(api: WeComAPI, fake: FakeWeComAPI, tmp_path: Path) -> None:
    picture = tmp_path / "chart.png"
    picture.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(5000))
    answer = api.upload_media("image", picture)
    assert answer["type"] == "image" and isinstance(answer["created_at"], str)
    (upload,) = fake.uploads
    assert (upload.type, upload.filename, upload.content_type) == ("image", "chart.png", "image/png")
    assert upload.data == picture.read_bytes()
    assert api.get_media(answer["media_id"], tmp_path / "back.png").path.read_bytes() == picture.read_bytes()


def test_upload_a_file_object_with_a_name(api: WeComAPI, fake: FakeWeComAPI) -> None:
    api.upload_media("file", io.BytesIO(b"name,score\nzhangsan,90\n"), filename="成绩.csv")
    assert fake.uploads[0].filename == "成绩.csv" and fake.uploads[0].data == b"name,score\nzhangsan,90\n"


def test_upload_is_retried_with_the_whole_file_after_token_expiry(api: WeComAPI, fake: FakeWeComAPI) -> None:
    api.access_token()
    fake.expire_tokens()
    data = os.urandom(50_000)
    api.upload_media("voice", io.BytesIO(data), filename="note.amr")
    assert len(fake.requests_to("media/upload")) == 2
    assert fake.uploads[0].data == data


def _sparse(path: Path, size: int) -> Path:
    with open(path, "wb") as fh:
        fh.truncate(size)
    return path


@pytest.mark.parametrize("media_type,name,size,words", [
    ("image", "big.png", 10 * 1024 * 1024 + 1, "at most 10 MB"),
    ("image", "photo.gif", 1000, "only .jpeg, .jpg, .png files"),
    ("voice", "big.amr", 2 * 1024 * 1024 + 1, "at most 2 MB"),
    ("voice", "song.mp3", 1000, "only .amr files"),
    ("video", "clip.mov", 1000, "only .mp4 files"),
    ("video", "clip.mp4", 10 * 1024 * 1024 + 1, "at most 10 MB"),
    ("file", "huge.zip", 20 * 1024 * 1024 + 1, "at most 20 MB"),
    ("file", "tiny.txt", 5, "larger than 5 bytes"),
    ("sticker", "a.png", 1000, "must be one of image, voice, video, file"),
])
def test_upload_limits_are_checked_before_uploading(api: WeComAPI, fake: FakeWeComAPI, tmp_path: Path,
                                                    media_type: str, name: str, size: int, words: str) -> None:
    with pytest.raises(MediaLimitError, match=words):
        api.upload_media(media_type, _sparse(tmp_path / name, size))
    assert fake.requests_to("media/upload") == [] and fake.gettoken_calls == 0


def test_upload_limits_at_the_boundary_pass(api: WeComAPI, fake: FakeWeComAPI, tmp_path: Path) -> None:
    api.upload_media("file", _sparse(tmp_path / "six.bin", 6))
    api.upload_media("voice", _sparse(tmp_path / "max.AMR", 2 * 1024 * 1024))
    assert [len(u.data) for u in fake.uploads] == [6, 2 * 1024 * 1024]


# From the config


def test_client_for_a_configured_app(fake: FakeWeComAPI, corp_id: str, secret: str, memory_store: Store) -> None:
    hr_secret = "hr-secret-" + uuid.uuid4().hex
    fake.add_app(corp_id, hr_secret, agent_id=1000005)
    common = {"corp_id": corp_id, "token": generate_token(), "encoding_aes_key": generate_aes_key(),
              "api_base": fake.url}
    config = config_from_sections({
        "wecom": {**common, "secret": secret, "agent_id": str(AGENT_ID)},
        "wecom:hr": {**common, "secret": hr_secret, "agent_id": "1000005"},
    })
    client_for(config.endpoint("hr"), memory_store).send_text("zhangsan", "from hr")
    client_for(config.endpoint(""), memory_store).send_text("zhangsan", "from main")
    assert [(m["agentid"], m["text"]["content"]) for m in fake.sent] == [(1000005, "from hr"), (AGENT_ID, "from main")]
    assert "secret" not in repr(client_for(config.endpoint("hr"), memory_store)).lower()
