"""A real project's pipeline: lib/pq, PostgreSQL's Go driver (github.com/lib/pq v1.10.9), tested
as its own CI tests it, against a PostgreSQL server beside the tests.

- the image: ``pq/Dockerfile`` (Debian's Go and PostgreSQL on the worker's base image), built by
  the pipeline and cached like a build;
- cached builds: the test binaries of lib/pq's two packages with tests, and go-junit-report, the
  JUnit writer, from its source; Go's module and build caches persist on the worker across runs;
- the tests in three shards of one suite (``unit``), each with its own PostgreSQL (a service from
  the same image), reporting JUnit XML, a failed shard retried once;
- a lint, ``go vet``, beside them.

The project is never part of this repository: ``scripts/get-example-pq.sh`` fetches it through
the Go module proxy and prints the directory to pass here. Run it with::

    python3 python/examples/pq.py --worker http://127.0.0.1:9009 --token-file PATH \\
        --project "$(bash scripts/get-example-pq.sh)"

or ``make example-pq``, which starts a worker of its own and runs this twice (cold, then warm).
"""

import argparse
import os

import bettertest as bt

parser = argparse.ArgumentParser(add_help=False)
parser.add_argument("--project", metavar="DIR", help="the directory that scripts/get-example-pq.sh prints")
project = parser.parse_known_args()[0].project
if project is None:
    parser.error('pass --project "$(bash scripts/get-example-pq.sh)": the directory of lib/pq that script fetches')
# bt.local takes a path relative to the current directory; these are absolute, wherever it runs from.
# (The constants in capitals are what python/bench/real_project.py runs with docker run, as its peer.)
HERE = os.path.dirname(os.path.abspath(__file__))
SRC = bt.local(os.path.join(project, "src"))
SHARDS = 3

# go-junit-report's go.mod names go-cmp (for its own tests): the go command reads that go.mod from
# the file proxy, and Go's module and build caches keep what it fetched and built.
JUNIT = "go build -o /out/go-junit-report . && /out/go-junit-report -version"
JUNIT_ENV = {"GOPROXY": "file:///goproxy"}
GO_CACHES = {"/root/go/pkg/mod": "go-mod", "/root/.cache/go-build": "go-build"}

# Go 1.19's go test -c makes one package's binary at a time: lib/pq's tests are in two packages.
COMPILE = """mkdir -p /out
go test -c -o /out/pq.test . && go test -c -o /out/hstore.test ./hstore"""

# One shard: of each package's tests and examples, as its test binary lists them, every SHARDS-th
# from the shard's own index; run in the package's directory as go test runs them, and written as
# JUnit XML by go-junit-report, which copies the verbose output through to the log as it comes.
SHARD = r"""run() { # BINARY DIR PACKAGE
  all=$(cd "$2" && "$1" -test.list '.*') || { echo "$1 -test.list failed" >&2; return 1; }
  names=$(echo "$all" | grep -v '^Benchmark' | awk -v k=INDEX -v n=SHARDS 'NR % n == k' | paste -sd'|')
  [ -n "$names" ] || return 0
  (cd "$2" && "$1" -test.v -test.run "^($names)\$" 2>&1) |
    /tools/go-junit-report -iocopy -set-exit-code -package-name "$3" -out "/results/$(basename "$1" .test).xml"
}
status=0
run /tests/pq.test /src github.com/lib/pq || status=1
run /tests/hstore.test /src/hstore github.com/lib/pq/hstore || status=1
exit $status"""
TEST_ENV = {"PGHOST": "db", "PGUSER": "postgres"}
TEST_USER = "tester"  # as root, TestHasCorrectRootGroupPermissions fails: see pq/Dockerfile

# Each shard's server: the image's own cluster, in the foreground, ready once it takes connections.
DB_COMMAND = "exec pg_ctlcluster --foreground 15 main start"
DB_READY = "pg_isready -U postgres"  # as postgres: a check as root would log a failed login each time

VET = "go vet ./..."

p = bt.pipeline("pq")
with p.stage("build") as s:
    image = s.image("image", context=bt.local(os.path.join(HERE, "pq")))
    junit = s.build(
        "go-junit-report",
        image=image,
        command=JUNIT,
        inputs={"/src": bt.local(os.path.join(project, "junit")), "/goproxy": bt.local(os.path.join(project, "goproxy"))},
        env=JUNIT_ENV,
        workdir="/src",
        outputs=["/out"],
        caches=GO_CACHES,
    )
    tests = s.build("compile", image=image, command=COMPILE, inputs={"/src": SRC}, workdir="/src", outputs=["/out"], caches=GO_CACHES)

db = bt.service(image=image, command=DB_COMMAND, ready=DB_READY)
with p.stage("test") as s:
    for i in range(SHARDS):
        s.test(
            f"unit-{i + 1}",
            suite="unit",
            image=image,
            command=SHARD.replace("INDEX", str(i)).replace("SHARDS", str(SHARDS)),
            inputs={"/src": SRC, "/tests": tests.artifact("/out"), "/tools": junit.artifact("/out")},
            env=TEST_ENV,
            user=TEST_USER,
            services={"db": db},
            results="/results",
            retries=1,
            timeout=300,
        )
    s.test("vet", image=image, command=VET, inputs={"/src": SRC}, workdir="/src", caches=GO_CACHES)
