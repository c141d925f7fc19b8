"""An example pipeline with a flaky test: its JUnit report says pkg.TestCache fails on the first
attempt and passes on the second (which attempt it is comes from BETTERTEST_ATTEMPT), so with
retries=1 the test passes and is marked flaky, and the boss lists pkg.TestCache on its Flaky
page. `make demo` runs it once."""

import bettertest as bt

BASE = "bettertest/base:bookworm"

# The command stands for a real test runner that writes JUnit XML.
REPORT = r"""mkdir -p /results
if [ "$BETTERTEST_ATTEMPT" = 1 ]; then
  cache='<failure message="cache miss: expected hit">got a stale entry after 2 ms</failure>'
  echo "pkg.TestCache failed: cache miss" >&2
fi
cat > /results/junit.xml <<XML
<testsuite name="pkg">
  <testcase classname="pkg" name="TestParse" time="0.012"/>
  <testcase classname="pkg" name="TestCache" time="0.250">$cache</testcase>
  <testcase classname="pkg" name="TestNetwork" time="0"><skipped message="no network here"/></testcase>
</testsuite>
XML"""

p = bt.pipeline("flaky")
with p.stage("test") as s:
    s.test("unit", image=BASE, command=REPORT, results="/results/junit.xml", retries=1)
