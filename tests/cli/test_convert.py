"""The converter against an in-memory API: outputs, resume without new jobs or uploads,
failures reported while the other files finish, and the event output formats."""

from __future__ import annotations

import io
import json
from pathlib import Path

import httpx
import pytest

from cli.convert import Converter, Plan, clashing_outputs, content_type, output_path
from cli.report import JsonReporter, Reporter
from cli.resume import UploadState, file_sha256, idempotency_key
from tests.cli.fake_api import FakeApi


def files(tmp_path: Path, **contents: bytes) -> list[Path]:
    paths = []
    for name, data in contents.items():
        path = tmp_path / f"{name}.mp4"
        path.write_bytes(data)
        paths.append(path)
    return paths


def run(
    fake: FakeApi, paths: list[Path], state: UploadState, plan: Plan | None = None
) -> tuple[list[dict[str, object]], list[str]]:
    """Convert ``paths``; the JSON events and the outcome statuses."""
    out = io.StringIO()
    converter = Converter(fake.client(), state, JsonReporter(out), plan or Plan({}, "mp3"))
    outcomes = converter.run(paths)
    return [json.loads(line) for line in out.getvalue().splitlines()], [o.status for o in outcomes]


def test_each_file_is_uploaded_converted_and_saved_beside_it(tmp_path: Path) -> None:
    fake = FakeApi()
    paths = files(tmp_path, a=b"video a", b=b"video b")
    events, statuses = run(fake, paths, UploadState("http://api.test", tmp_path / "s.json"))
    assert statuses == ["converted", "converted"]
    assert (tmp_path / "a.mp3").read_bytes() == b"ID3video a"
    assert (tmp_path / "b.mp3").read_bytes() == b"ID3video b"
    names = [e["event"] for e in events if e["file"] == str(paths[0])]
    assert names == ["uploading", "uploaded", "job_created", "job", "downloading", "saved"]


def test_a_failed_file_is_reported_while_the_others_finish(tmp_path: Path) -> None:
    fake = FakeApi(fail_media={b"just text"})
    paths = files(tmp_path, good=b"video", notes=b"just text", other=b"video 2")
    events, statuses = run(
        fake,
        paths,
        UploadState("http://api.test", tmp_path / "s.json"),
        Plan({}, "mp3", parallel=1),
    )
    assert statuses == ["converted", "failed", "converted"]
    failed = [e for e in events if e["event"] == "failed"]
    assert failed == [
        {
            "event": "failed",
            "file": str(paths[1]),
            "job_id": failed[0]["job_id"],
            "code": "unsupported_media",
            "message": "The file's audio could not be decoded.",
        }
    ]
    assert not (tmp_path / "notes.mp3").exists()


def test_second_run_creates_no_job_and_downloads_only_what_is_missing(tmp_path: Path) -> None:
    # Given a finished first run of two files
    fake = FakeApi()
    state = UploadState("http://api.test", tmp_path / "s.json")
    paths = files(tmp_path, a=b"video a", b=b"video b")
    run(fake, paths, state)
    jobs_before, puts_before = len(fake.jobs), fake.count("PUT")
    (tmp_path / "b.mp3").unlink()
    # When the same command runs again
    events, statuses = run(fake, paths, state)
    # Then a.mp3 is left alone, b's job is replayed (no upload, no new job), b.mp3 is back
    assert statuses == ["skipped", "converted"]
    assert len(fake.jobs) == jobs_before and fake.count("PUT") == puts_before
    by_b = [e["event"] for e in events if e["file"] == str(paths[1])]
    assert by_b == ["job_resumed", "downloading", "saved"]
    assert (tmp_path / "b.mp3").read_bytes() == b"ID3video b"


def test_an_upload_cut_short_is_uploaded_again_under_the_same_key(tmp_path: Path) -> None:
    # Given a remembered upload whose bytes never arrived (Ctrl-C during the PUT)
    fake = FakeApi()
    state = UploadState("http://api.test", tmp_path / "s.json")
    [path] = files(tmp_path, a=b"video a")
    grant = fake.client().create_upload("a.mp4", "video/mp4", 7)
    state.put(idempotency_key(file_sha256(path), {}, state.state_id()), grant["upload_id"])
    # When it runs again
    events, statuses = run(fake, [path], state)
    # Then a new upload carries the bytes and the job is made once
    assert statuses == ["converted"]
    assert [e["event"] for e in events][:3] == ["uploading", "uploaded", "job_created"]
    assert len(fake.uploads) == 2 and len(fake.jobs) == 1


def test_the_same_bytes_twice_in_one_run_make_one_job(tmp_path: Path) -> None:
    fake = FakeApi()
    paths = files(tmp_path, a=b"same", b=b"same")
    _, statuses = run(fake, paths, UploadState("http://api.test", tmp_path / "s.json"))
    assert statuses == ["converted", "converted"]
    assert len(fake.jobs) == 1 and (tmp_path / "b.mp3").exists()


def test_idempotency_key_follows_content_options_and_state_file() -> None:
    key = idempotency_key("abc", {"quality": 2, "channels": 1}, "s1")
    assert key == idempotency_key("abc", {"channels": 1, "quality": 2}, "s1")
    assert key != idempotency_key("abc", {"quality": 3, "channels": 1}, "s1")
    assert key != idempotency_key("abd", {"quality": 2, "channels": 1}, "s1")
    assert key != idempotency_key("abc", {"quality": 2, "channels": 1}, "s2")
    assert key.startswith("v2m-") and len(key) <= 255


def test_another_computer_converting_the_same_file_gets_its_own_job(tmp_path: Path) -> None:
    # Given a file converted with one state file
    fake = FakeApi()
    paths = files(tmp_path, a=b"video a")
    run(fake, paths, UploadState("http://api.test", tmp_path / "here.json"))
    (tmp_path / "a.mp3").unlink()
    # When it is converted with another (a second computer, or the file deleted)
    events, statuses = run(fake, paths, UploadState("http://api.test", tmp_path / "there.json"))
    # Then it converts instead of failing on the key the first one used
    assert statuses == ["converted"], events
    assert len(fake.jobs) == 2


def test_outputs_are_named_after_inputs_with_the_format_extension(tmp_path: Path) -> None:
    assert output_path(Path("in/holiday.mov"), None, "mp3") == Path("in/holiday.mp3")
    assert output_path(Path("in/holiday.mov"), Path("out"), "ogg") == Path("out/holiday.ogg")
    clashes = clashing_outputs([Path("a/x.mp4"), Path("b/x.mov")], Plan({}, "mp3", Path("out")))
    assert len(clashes) == 1 and "a/x.mp4 and b/x.mov" in clashes[0]
    assert content_type(Path("x.mp4")) == "video/mp4"
    assert content_type(Path("notes.txt")) == "application/octet-stream"


def test_plain_lines_name_each_file_and_end_with_the_counts(tmp_path: Path) -> None:
    fake = FakeApi(fail_media={b"text"})
    paths = files(tmp_path, good=b"video", bad=b"text")
    out = io.StringIO()
    converter = Converter(
        fake.client(),
        UploadState("http://api.test", tmp_path / "s.json"),
        Reporter(out),
        Plan({}, "mp3"),
    )
    reporter = converter.reporter
    reporter.finish(converter.run(paths))
    lines = out.getvalue().splitlines()
    assert "good.mp4: saved" in "\n".join(lines)
    assert f"FAILED {paths[1]}: unsupported_media: The file's audio could not be decoded." in lines
    assert lines[-1] == "1 converted, 0 skipped, 1 failed"


@pytest.mark.parametrize("parallel", [1, 3])
def test_every_file_gets_an_outcome_whatever_the_parallelism(tmp_path: Path, parallel: int) -> None:
    fake = FakeApi()
    paths = files(tmp_path, **{f"f{i}": f"video {i}".encode() for i in range(5)})
    _, statuses = run(
        fake,
        paths,
        UploadState("http://api.test", tmp_path / "s.json"),
        Plan({}, "mp3", parallel=parallel),
    )
    assert statuses == ["converted"] * 5


def test_an_answer_v2m_cannot_read_fails_that_file_only(tmp_path: Path) -> None:
    # Given an API whose upload answer for one file is not JSON (a proxy's page, say)
    fake = FakeApi()

    def before(request: httpx.Request) -> httpx.Response | None:
        if request.url.path == "/v1/uploads" and b'"bad.mp4"' in request.content:
            return httpx.Response(201, text="<html>gateway</html>")
        return None

    fake.before = before
    paths = files(tmp_path, good=b"video", bad=b"other video")
    events, statuses = run(fake, paths, UploadState("http://api.test", tmp_path / "s.json"))
    # Then that file fails with a reason and the other converts
    assert statuses == ["converted", "failed"]
    [failed] = [e for e in events if e["event"] == "failed"]
    assert failed["code"] == "unexpected_answer"
    assert "JSONDecodeError" in str(failed["message"])


def test_a_large_file_goes_in_parts_and_resumes_after_ctrl_c(tmp_path: Path) -> None:
    # Given a server that takes files of 8 bytes and more in 4-byte parts
    fake = FakeApi(multipart_at=8, part_size=4)
    state = UploadState("http://api.test", tmp_path / "s.json")
    data = b"0123456789abcdef!!"  # five parts, the last of 2 bytes
    [path] = files(tmp_path, big=data)
    first = Converter(fake.client(), state, JsonReporter(io.StringIO()), Plan({}, "mp3"))

    def ctrl_c_on_part_three(request: httpx.Request) -> httpx.Response | None:
        if request.url.path.endswith("/3") and request.method == "PUT":
            first.client.cancel.set()
            raise httpx.ConnectError("connection reset")
        return None

    # When Ctrl-C comes while part 3 is being sent
    fake.before = ctrl_c_on_part_three
    assert first.run([path]) == []
    (upload_id,) = fake.uploads
    stored = set(fake.uploads[upload_id]["parts"])
    assert 3 not in stored and not fake.jobs
    # And the same command runs again
    fake.before = None
    puts_before = len(fake.requests)
    events, statuses = run(fake, [path], state)
    # Then only the parts storage lacked are sent, in the same upload, and it converts
    sent = {
        int(r.rsplit("/", 1)[1])
        for r in fake.requests[puts_before:]
        if r.startswith("PUT storage.test/parts/")
    }
    assert sent == {1, 2, 3, 4, 5} - stored
    assert statuses == ["converted"], events
    assert "upload_resumed" in [e["event"] for e in events]
    assert list(fake.uploads) == [upload_id] and len(fake.jobs) == 1
    assert fake.objects[f"uploads/{upload_id}"] == data
