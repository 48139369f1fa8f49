"""The media plugin as a user sees it: media sent through a simulated WeCom is
answered at once, lands on disk with the right bytes under a generated name,
and the sender is told through message/send what became of it."""
from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from wechatbot import hookimpl
from wechatbot.testing.simulator import SimulatedWeCom
from wechatbot.testing import app_sections, make_app, simulated_wecom

MB = 1024 * 1024


def host(fake, tmp_path: Path, plugins: str = "media", extra: dict | None = None, **media: str) -> SimulatedWeCom:
    """A host running the installed media plugin (plus ``extra``) against the fake API."""
    settings = {"dir": str(tmp_path / "media"), **media}
    sections = app_sections(api_base=fake.url, wechatbot={"plugins": plugins}, **{"plugin:media": settings})
    fake.add_app(sections["wecom"]["corp_id"], sections["wecom"]["secret"])
    return simulated_wecom(make_app(sections, extra))


def today(tmp_path: Path) -> Path:
    return tmp_path / "media" / "default" / time.strftime("%Y%m%d")


def files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if not p.is_dir()}


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(MB), b""):
            digest.update(chunk)
    return digest.hexdigest()


def pushed(fake, n: int = 1, timeout: float = 10) -> list[tuple[str, str]]:
    return [(m["touser"], m["text"]["content"]) for m in fake.wait_for_sent(n, timeout)]


def test_image_is_saved_with_its_bytes_and_the_sender_told(fake_wecom_api, tmp_path: Path) -> None:
    data = os.urandom(300_000)
    fake_wecom_api.add_media("img-1", data, filename="holiday.png", content_type="image/png")
    wecom = host(fake_wecom_api, tmp_path)

    answer = wecom.message("image", media_id="img-1", pic_url="http://p/1", from_user="zhangsan", msg_id="1001")

    assert answer.content == "正在接收图片…"
    assert pushed(fake_wecom_api) == [("zhangsan", "已保存图片（300000 字节）")]
    saved = today(tmp_path) / "zhangsan-1001.png"
    assert files_under(tmp_path / "media") == {saved}
    assert sha256(saved) == hashlib.sha256(data).hexdigest()


def test_50_mb_file_streams_to_disk_after_an_answer_in_time(fake_wecom_api, tmp_path: Path) -> None:
    source, digest = tmp_path / "source.bin", hashlib.sha256()
    with open(source, "wb") as fh:
        for _ in range(50):
            chunk = os.urandom(MB)
            digest.update(chunk)
            fh.write(chunk)
    fake_wecom_api.add_media("big", source, filename="report.pdf")
    fake_wecom_api.set_delay(1.0, "media/get")  # WeCom is slow to start sending
    wecom = host(fake_wecom_api, tmp_path, max_bytes=str(60 * MB))

    started = time.monotonic()
    answer = wecom.message("file", media_id="big", from_user="lisi", msg_id="2002")
    answered = time.monotonic() - started
    sent = pushed(fake_wecom_api, timeout=20)
    print(f"answered in {answered:.3f} s, 50 MB saved and pushed after {time.monotonic() - started:.2f} s")

    assert answer.content == "正在接收文件…" and answered < 1.0  # WeCom waits 5 s
    assert sent == [("lisi", f"已保存文件（{50 * MB} 字节）")]
    saved = today(tmp_path) / "lisi-2002.bin"  # octet-stream: the extension is not the sender's
    assert files_under(tmp_path / "media") == {saved}
    assert sha256(saved) == digest.hexdigest()


def test_hostile_names_cannot_write_outside_the_folder(fake_wecom_api, tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    dispositions = [
        'attachment; filename="../../../outside.txt"',
        'attachment; filename="..\\\\..\\\\..\\\\outside.txt"',
        f'attachment; filename="{outside}"',
        "attachment; filename*=UTF-8''..%2F..%2F..%2Foutside.txt",
    ]
    for n, disposition in enumerate(dispositions):
        fake_wecom_api.add_media(f"m{n}", f"payload {n}".encode(), content_type="text/html", content_disposition=disposition)
    wecom = host(fake_wecom_api, tmp_path, receiving="", saved="{name} {filename}")

    answers = [wecom.message("file", media_id=f"m{n}", from_user="../../x", msg_id=f"{n}/../..") for n in range(4)]
    answers.append(wecom.message("file", media_id="m0", from_user="/etc", msg_id="..\\.."))

    assert [a.body for a in answers] == [""] * 5  # receiving = (empty): no immediate answer
    texts = [text for _, text in pushed(fake_wecom_api, 5)]
    names = sorted(text.split()[0] for text in texts)
    assert names[1:] == ["x-0.bin", "x-1.bin", "x-2.bin", "x-3.bin"]  # sender and msgid made harmless
    assert names[0].startswith("etc-") and len(names[0]) == len("etc-.bin") + 32  # no usable msgid: a uuid
    assert {text.split()[1] for text in texts} == {"outside.txt"}  # the sender's name, shown, never used
    assert files_under(tmp_path) == {today(tmp_path) / name for name in names}
    assert (today(tmp_path) / "x-2.bin").read_bytes() == b"payload 2"


def test_over_max_bytes_leaves_no_file_and_tells_the_sender(fake_wecom_api, tmp_path: Path) -> None:
    fake_wecom_api.add_media("fits", b"x" * 1000, content_type="video/mp4")
    fake_wecom_api.add_media("huge", b"x" * 5000, content_type="video/mp4")
    wecom = host(fake_wecom_api, tmp_path, max_bytes="1000")

    wecom.message("video", media_id="huge", from_user="wangwu", msg_id="1")
    assert pushed(fake_wecom_api) == [("wangwu", "视频超过 1000 字节，未保存")]
    wecom.message("video", media_id="fits", from_user="wangwu", msg_id="2")
    assert pushed(fake_wecom_api, 2)[1] == ("wangwu", "已保存视频（1000 字节）")
    assert files_under(tmp_path / "media") == {today(tmp_path) / "wangwu-2.mp4"}


def test_a_failed_download_is_told_not_lost_silently(fake_wecom_api, tmp_path: Path) -> None:
    wecom = host(fake_wecom_api, tmp_path)
    wecom.message("voice", media_id="expired", format="amr", from_user="zhaoliu")
    assert pushed(fake_wecom_api) == [("zhaoliu", "语音未能保存，请稍后再发一次")]
    assert files_under(tmp_path / "media") == set()


def test_delete_after_days_sweeps_old_files_at_start_and_after_each_save(fake_wecom_api, tmp_path: Path) -> None:
    def old_file(where: str, days_ago: float) -> Path:
        path = tmp_path / "media" / where
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"old")
        stamp = time.time() - days_ago * 86400
        os.utime(path, (stamp, stamp))
        return path

    kept_note = old_file("notes.txt", 30)  # not in a day folder: never the plugin's to delete
    old_file("default/20200101/a-1.jpg", 30)
    recent = old_file(time.strftime("default/%Y%m%d/b-2.jpg", time.localtime(time.time() - 2 * 86400)), 2)
    fake_wecom_api.add_media("img", b"new image", content_type="image/jpeg")
    wecom = host(fake_wecom_api, tmp_path, after="delete_after_days:7")
    assert files_under(tmp_path / "media") == {kept_note, recent}

    stale = old_file("default/20200102/c-3.jpg", 30)
    wecom.message("image", media_id="img", from_user="zhangsan", msg_id="9")
    pushed(fake_wecom_api)
    assert not stale.exists() and not stale.parent.exists()
    assert files_under(tmp_path / "media") == {kept_note, recent, today(tmp_path) / "zhangsan-9.jpg"}


class Archiver:
    """Another plugin that takes saved files: reads each, then says what to do with it."""

    def __init__(self, verdict: str | None) -> None:
        self.verdict = verdict
        self.seen: list[tuple[str, bytes, str]] = []

    @hookimpl
    def media_saved(self, path, message, context):
        self.seen.append((Path(path).name, Path(path).read_bytes(), message.from_user))
        return self.verdict


@pytest.mark.parametrize(("verdict", "after", "kept"), [
    (None, "keep", True),
    ("delete", "keep", False),
    (None, "delete", False),
])
def test_saved_file_is_handed_to_every_plugin_and_deleted_on_request(fake_wecom_api, tmp_path: Path, verdict, after, kept) -> None:
    fake_wecom_api.add_media("doc", b"%PDF-1.7 contents", content_type="application/pdf")
    archiver = Archiver(verdict)
    wecom = host(fake_wecom_api, tmp_path, plugins="media, archiver", extra={"archiver": archiver}, after=after)

    wecom.message("file", media_id="doc", from_user="lisi", msg_id="5")

    assert pushed(fake_wecom_api) == [("lisi", "已保存文件（17 字节）")]
    assert archiver.seen == [("lisi-5.pdf", b"%PDF-1.7 contents", "lisi")]
    assert (today(tmp_path) / "lisi-5.pdf").exists() is kept


def test_without_a_section_the_plugin_stays_idle(fake_wecom_api) -> None:
    sections = app_sections(api_base=fake_wecom_api.url, wechatbot={"plugins": "media"})
    del sections["wecom"]["secret"]
    wecom = simulated_wecom(make_app(sections))
    assert wecom.message("image", media_id="img", pic_url="http://p").body == ""
    assert fake_wecom_api.requests == []


@pytest.mark.parametrize(("settings", "expected"), [
    ({"dir": ""}, "dir is required"),
    ({"dir": "{tmp}/a-file/media"}, "dir = '{tmp}/a-file/media' cannot be created or written"),
    ({"max_bytes": "20MB"}, "max_bytes = '20MB' is not a positive whole number"),
    ({"max_bytes": "0"}, "max_bytes = '0'"),
    ({"after": "delete_after_days:0"}, "after = 'delete_after_days:0'"),
    ({"after": "sometimes"}, "use keep, delete or delete_after_days:N"),
    ({"saved": "已保存 {path}"}, "saved uses {path}"),
    ({"receiving": "正在接收 {kind"}, "receiving = '正在接收 {kind' is not a valid template"),
    ({"secret": None}, "set secret"),
])
def test_bad_config_stops_start_up_naming_the_key(tmp_path: Path, settings: dict, expected: str) -> None:
    (tmp_path / "a-file").write_text("a file, not a folder")
    media = {"dir": str(tmp_path / "media")}
    media.update({k: v.replace("{tmp}", str(tmp_path)) for k, v in settings.items() if k != "secret"})
    sections = app_sections(wechatbot={"plugins": "media"}, **{"plugin:media": media})
    if "secret" in settings:
        del sections["wecom"]["secret"]
    with pytest.raises(RuntimeError) as info:
        make_app(sections)
    message = str(info.value)
    assert "plugin 'media' failed to start" in message and expected.replace("{tmp}", str(tmp_path)) in message
