"""Secrets: bt.secret, the masker, and a real worker and Docker giving secrets to containers.

The pipedef prints a file secret whole and split across two writes, an env secret, and a
secret that is base64 text printed as it is; neither the jsonl nor the human report shows any.
"""

from __future__ import annotations

import io
import os
import random
import re
import tempfile
import unittest
from pathlib import Path

import bettertest as bt
from bettertest import ConfigError, HumanReporter, JsonlReporter, Masker, MaskingReporter
from tests.test_pipeline import PipedefTestCase, out, output

DEPLOY = "deploy-KEY-7f3a9c"
TOKEN = "tok-5d1e-b8"
B64 = "c2VjcmV0LWtleS1ieXRlcw=="

PIPEDEF = r'''
import bettertest as bt

p = bt.pipeline("secrets")
with p.stage("test") as s:
    s.test("print", image="bettertest/base:bookworm", secrets={
        "/run/secrets/deploy": bt.secret("deploy_key"),
        "env:TOKEN": bt.secret("token"),
        "/run/secrets/b64": bt.secret("b64"),
    }, command="""S=$(cat /run/secrets/deploy)
echo "whole: $S"
printf 'split: %s' "${S%???}"; sleep 0.1; printf '%s\n' "${S#"${S%???}"}"
sleep 0.1; echo "env: $TOKEN" >&2; sleep 0.1
echo "b64: $(cat /run/secrets/b64)"
exit 1""")
print(bt.secret("token"))
'''


def write_secrets(directory: Path, mode: int = 0o600, **values: str) -> str:
    directory.mkdir()
    for name, value in values.items():
        path = directory / name
        path.write_text(value + "\n")
        os.chmod(path, mode)
    return str(directory)


class SecretsInPipedefsTest(PipedefTestCase):
    def test_secrets_reach_the_container_and_never_the_report(self) -> None:
        secrets_dir = write_secrets(self.dir / "secrets", deploy_key=DEPLOY, token=TOKEN, b64=B64, unused="not-used-99")
        run = self.run_pipedef(PIPEDEF, "--secrets-dir", secrets_dir)
        self.assertEqual(run.code, 1, run.stderr)
        self.assertEqual(output(run.events, "print"), "whole: ***\nsplit: ***\nb64: ***\n")
        self.assertEqual(output(run.events, "print", "stderr"), "env: ***\n")
        self.assertEqual(run.stderr, "Secret('token')\n")
        for value in (DEPLOY, TOKEN, B64, DEPLOY[:-3]):
            self.assertNotIn(value, run.stdout)

        human = self.run_pipedef(PIPEDEF, "--secrets-dir", secrets_dir, report="human")
        self.assertEqual(human.code, 1, human.stderr)
        # The sleeps order the writes to stdout and stderr, two pipes.
        self.assertEqual(
            re.sub(r"\d+\.\d\ds", "D", human.stdout.replace(self.proc.url, "URL")),
            "pipeline secrets on URL\nstage test\n  failed   print  D  exit code 1\n"
            "    | whole: ***\n    | split: ***\n    | env: ***\n    | b64: ***\n"
            "stage test failed in D\nSecret('token')\nfailed: print\n"
            "pipeline secrets failed in D: 0 passed (0 cached), 1 failed, 0 skipped; test cases: 1 failed\n",
        )
        for value in (DEPLOY, TOKEN, B64, DEPLOY[:-3]):
            self.assertNotIn(value, human.stdout)

    def test_a_missing_secret_says_what_the_pipeline_has_and_how_to_declare_one(self) -> None:
        secrets_dir = write_secrets(self.dir / "secrets", token=TOKEN)
        run = self.run_pipedef("import bettertest as bt\nbt.secret('deploy_key')\n", "--secrets-dir", secrets_dir, report="human")
        self.assertEqual(run.code, 1)
        self.assertEqual(
            run.stderr.splitlines()[-1],
            "bettertest.errors.ConfigError: the pipeline has no secret named 'deploy_key' (it has: token): "
            "declare it on the boss with --secret NAME=FILE and --pipedef FILE,secrets=NAME (several: secrets=A+B), "
            "or run the pipedef with --secrets-dir DIR holding a file NAME",
        )

    def test_a_secret_file_others_can_read_is_refused(self) -> None:
        secrets_dir = write_secrets(self.dir / "secrets", mode=0o644, token=TOKEN)
        run = self.run_pipedef(PIPEDEF, "--secrets-dir", secrets_dir, report="human")
        self.assertEqual(run.code, 2)
        path = os.path.join(secrets_dir, "token")
        self.assertEqual(run.stderr, f"pipedef.py: error: the secret file {path} is readable by group or others (mode 0644): run chmod 600 {path}\n")


class SecretTest(unittest.TestCase):
    def test_no_secrets_dir(self) -> None:
        with self.assertRaises(ConfigError) as e:
            bt.secret("key", argv=[])
        self.assertEqual(
            str(e.exception),
            "the pipeline has no secrets, so none named 'key': declare it on the boss with --secret NAME=FILE and "
            "--pipedef FILE,secrets=NAME (several: secrets=A+B), or run the pipedef with --secrets-dir DIR holding a file NAME",
        )

    def test_reads_the_file_of_that_name(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            d = write_secrets(Path(tmp) / "s", key=DEPLOY)
            s = bt.secret("key", argv=["--worker", "x", "--secrets-dir", d])
            self.assertEqual((s.name, s.reveal(), repr(s), str(s)), ("key", DEPLOY, "Secret('key')", "Secret('key')"))

    def test_task_secrets_must_be_secrets_going_somewhere(self) -> None:
        from bettertest._pipeline import _check_secrets

        s = bt.Secret("k", "v")
        for bad, message in (
            ({"/run/s": "v"}, "the secret for '/run/s' is a str: pass bt.secret(NAME), so that its value is masked"),
            ({"run/s": s}, "'run/s' is not where a secret can go: use an absolute container path, e.g. '/run/secrets/key', or 'env:NAME'"),
            ({"env:1X": s}, "'env:1X' does not name an environment variable: use env:NAME, e.g. 'env:TOKEN'"),
        ):
            with self.assertRaises(ValueError) as e:
                _check_secrets(bad)  # type: ignore[arg-type]
            self.assertEqual(str(e.exception), message)


def naive(values: list[str], text: str) -> str:
    """Whole-text masking by marking every character of every occurrence: what Masker must give."""
    covering = [[] for _ in text]  # per character: the occurrences (start, end) covering it
    for v in values:
        for i in range(len(text) - len(v) + 1):
            if v and text.startswith(v, i):
                for j in range(i, i + len(v)):
                    covering[j].append((i, i + len(v)))
    out, i = [], 0
    while i < len(text):
        if not covering[i]:
            out.append(text[i])
            i += 1
            continue
        end = max(e for _, e in covering[i])
        while any(s < end < e for cov in covering[i:end] for s, e in cov) or (
            end < len(text) and any(s < end for s, _ in covering[end])
        ):
            end = max(e for cov in covering[i:end + 1] for _, e in cov)
        out.append("***")
        i = end
    return "".join(out)


class MaskerTest(unittest.TestCase):
    def test_cases(self) -> None:
        for values, text, want in (
            (["hunter2"], "pw=hunter2\n", "pw=***\n"),
            (["ab"], "abab", "******"),
            (["aa"], "aaa b", "*** b"),
            (["abc", "bcd"], "xabcdx", "x***x"),
            (["pässwörd"], "ä pässwörd ö", "ä *** ö"),
            ([""], "plain", "plain"),
        ):
            m = Masker(values)
            self.assertEqual(m.mask(text), want)
            self.assertEqual(naive(values, text), want)
            for cut in range(len(text) + 1):
                s = m.stream()
                self.assertEqual(s.write(text[:cut]) + s.write(text[cut:]) + s.flush(), want, (values, text, cut))

    def test_random_chunks_against_whole_text(self) -> None:
        rng = random.Random(14)
        for _ in range(3000):
            values = ["".join(rng.choice("ab") for _ in range(rng.randint(1, 4))) for _ in range(rng.randint(1, 2))]
            text = "".join(rng.choice("abc") for _ in range(rng.randint(0, 24)))
            want = naive(values, text)
            m = Masker(values)
            self.assertEqual(m.mask(text), want, (values, text))
            s, got, at = m.stream(), "", 0
            while at < len(text):
                n = rng.randint(1, 5)
                got += s.write(text[at:at + n])
                at += n
            self.assertEqual(got + s.flush(), want, (values, text))


class MaskingReporterTest(unittest.TestCase):
    def test_a_value_split_across_chunks_and_in_errors_is_masked(self) -> None:
        buf = io.BytesIO()
        human = io.StringIO()
        for inner in (JsonlReporter(buf, wall_clock=lambda: 0.0), HumanReporter(human, color=False)):
            r = MaskingReporter(inner, Masker([DEPLOY]))
            r.emit({"event": "task_start", "stage": "s", "task": "t", "kind": "test", "image": "i", "command": "c", "retries": 0})
            r.emit(out("s", "t", "a " + DEPLOY[:5]))
            r.emit(out("s", "t", DEPLOY[5:] + " b " + DEPLOY[:3]))
            r.emit({"event": "task_end", "stage": "s", "task": "t", "kind": "test", "status": "failed", "exit_code": 1,
                    "duration_ms": 5, "cached": False, "error": "bad key " + DEPLOY, "attempts": 1, "flaky": False,
                    "quarantined": False})
        self.assertEqual(
            buf.getvalue().decode(),
            '{"event":"task_start","time":"1970-01-01T00:00:00.000Z","stage":"s","task":"t","kind":"test","image":"i","command":"c","retries":0}\n'
            '{"event":"task_output","time":"1970-01-01T00:00:00.000Z","stage":"s","task":"t","stream":"stdout","text":"a "}\n'
            '{"event":"task_output","time":"1970-01-01T00:00:00.000Z","stage":"s","task":"t","stream":"stdout","text":"*** b "}\n'
            '{"event":"task_output","time":"1970-01-01T00:00:00.000Z","stage":"s","task":"t","stream":"stdout","text":"dep"}\n'
            '{"event":"task_end","time":"1970-01-01T00:00:00.000Z","stage":"s","task":"t","kind":"test","status":"failed","exit_code":1,'
            '"duration_ms":5,"cached":false,"error":"bad key ***","attempts":1,"flaky":false,"quarantined":false}\n',
        )
        self.assertEqual(human.getvalue(), "  failed   t  0.00s  exit code 1; bad key ***\n    | a *** b dep\n")


if __name__ == "__main__":
    unittest.main()
