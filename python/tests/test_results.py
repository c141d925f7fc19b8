"""The test results parsers: real-looking JUnit XML and go test -json files in, whole lists out."""

from __future__ import annotations

import json
import unittest
from pathlib import Path

from bettertest import ResultsError, TestCase, parse_go_test_json, parse_junit, parse_results

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "results"

# pytest 7.2 --junitxml of tests/test_cart.py: a pass, a failure, a fixture error, a skip, a
# module-level test (no class in its classname).
PYTEST = [
    TestCase("tests.test_cart.TestCart.test_add", "passed", 0.004, ""),
    TestCase(
        "tests.test_cart.TestCart.test_total",
        "failed",
        0.012,
        "assert 6 == 7\n"
        "self = <test_cart.TestCart object at 0x7f181fe17a90>\n"
        "\n"
        "    def test_total(self):\n"
        "        cart = Cart()\n"
        '        cart.add("apple", 3)\n'
        '        cart.add("pear", 4)\n'
        "        total = cart.total()\n"
        ">       assert total == 7\n"
        "E       assert 6 == 7\n"
        "\n"
        "tests/test_cart.py:32: AssertionError",
    ),
    TestCase(
        "tests.test_cart.TestCart.test_saved",
        "failed",
        0.001,
        'failed on setup with "ConnectionError: database at localhost:5432 refused the connection"\n'
        "@pytest.fixture\n"
        "    def db():\n"
        '>       raise ConnectionError("database at localhost:5432 refused the connection")\n'
        "E       ConnectionError: database at localhost:5432 refused the connection\n"
        "\n"
        "tests/test_cart.py:18: ConnectionError",
    ),
    TestCase("tests.test_cart.TestCart.test_discount", "skipped", 0.0, ""),
    TestCase("tests.test_cart.test_checkout_sends_receipt", "passed", 0.0, ""),
]

# Surefire: a single <testsuite> root, a failure whose captured page holds <!DOCTYPE html> in
# CDATA, time="" on a test that failed once and passed on its rerun (<flakyFailure>), a skip.
SUREFIRE = [
    TestCase("com.example.shop.CartTest.addsItem", "passed", 0.021, ""),
    TestCase(
        "com.example.shop.CartTest.totalIncludesTax",
        "failed",
        0.034,
        "expected: <107.0> but was: <100.0>\n"
        "org.opentest4j.AssertionFailedError: expected: <107.0> but was: <100.0>\n"
        "\tat org.junit.jupiter.api.AssertionFailureBuilder.build(AssertionFailureBuilder.java:151)\n"
        "\tat org.junit.jupiter.api.AssertEquals.assertEquals(AssertEquals.java:86)\n"
        "\tat com.example.shop.CartTest.totalIncludesTax(CartTest.java:31)\n",
    ),
    TestCase(
        "com.example.shop.CartTest.rendersCheckoutPage",
        "passed",
        0.0,
        "Connection refused\njava.net.ConnectException: Connection refused\n"
        "\tat com.example.shop.CartTest.rendersCheckoutPage(CartTest.java:44)\n",
        flaky=True,
    ),
    TestCase("com.example.shop.CartTest.appliesCoupon", "skipped", 0.0, ""),
    TestCase("com.example.shop.CartTest.emptiesCart", "passed", 1.25, ""),
]

# PHPUnit: suites three deep (config, test suite, class, data provider), failures without a
# message attribute.
NESTED = [
    TestCase("Tests.Unit.PriceTest.testRoundsToCents", "passed", 0.001734, ""),
    TestCase('Tests.Unit.PriceTest.testParses with data set "plain"', "passed", 0.000412, ""),
    TestCase(
        'Tests.Unit.PriceTest.testParses with data set "comma"',
        "failed",
        0.000427,
        "Tests\\Unit\\PriceTest::testParses with data set \"comma\" ('1,50', 1.5)\n"
        "Failed asserting that 1.0 is identical to 1.5.\n"
        "\n"
        "/src/tests/Unit/PriceTest.php:25",
    ),
    TestCase(
        "Tests.Integration.OrderStoreTest.testStoresOrder",
        "failed",
        0.210002,
        "Tests\\Integration\\OrderStoreTest::testStoresOrder\n"
        "PDOException: SQLSTATE[HY000] [2002] Connection refused\n"
        "\n"
        "/src/tests/Integration/OrderStoreTest.php:18",
    ),
    TestCase("Tests.Integration.OrderStoreTest.testListsOrders", "passed", 0.030943, ""),
]

# Go 1.26 `go test -json -bench . ./... 2>&1` (with GODEBUG=gotestjsonbuildtext=1 for the
# pre-1.24 plain-text build errors): a package that does not build, a benchmark (which gets a
# run event but no result of its own), a pass, a failure, a skip, subtests.
GO_TEST = [
    TestCase("example.com/shop/bench/TestPrice", "passed", 0.0, ""),
    TestCase("example.com/shop/bench/BenchmarkPrice", "passed", 0.0, ""),
    # It does not build: the package is the failed case.
    TestCase("example.com/shop/broken", "failed", 0.0, "FAIL\texample.com/shop/broken [build failed]\n"),
    TestCase("example.com/shop/cart/TestAdd", "passed", 0.02, ""),
    TestCase(
        "example.com/shop/cart/TestTotal",
        "failed",
        0.0,
        "=== RUN   TestTotal\n"
        "    cart_test.go:11: computing total for 3 items\n"
        "    cart_test.go:12: Total() = 41, want 42\n"
        "--- FAIL: TestTotal (0.00s)\n",
    ),
    TestCase("example.com/shop/cart/TestDiscount", "skipped", 0.0, ""),
    TestCase("example.com/shop/cart/TestCheckout", "failed", 0.0, "=== RUN   TestCheckout\n--- FAIL: TestCheckout (0.00s)\n"),
    TestCase("example.com/shop/cart/TestCheckout/empty", "passed", 0.0, ""),
    TestCase(
        "example.com/shop/cart/TestCheckout/expired_card",
        "failed",
        0.0,
        "=== RUN   TestCheckout/expired_card\n"
        "    cart_test.go:19: card accepted after expiry\n"
        "--- FAIL: TestCheckout/expired_card (0.00s)\n",
    ),
]

# `go test -json -timeout 1s`: the test binary panics and exits while TestSync sleeps.
GO_TEST_TIMEOUT = [
    TestCase("example.com/shop/store/TestOpen", "passed", 0.0, ""),
    TestCase(
        "example.com/shop/store/TestSync",
        "failed",
        0.0,
        "no result: the test did not finish\n"
        "=== RUN   TestSync\n"
        "    store_test.go:11: waiting for the replica\n"
        "panic: test timed out after 1s\n"
        "\trunning tests:\n"
        "\t\tTestSync (1s)\n"
        "\n"
        "goroutine 17 [running]:\n"
        "testing.(*M).startAlarm.func1()\n"
        "\t/usr/local/go/src/testing/testing.go:2802 +0x354\n"
        "created by time.goFunc\n"
        "\t/usr/local/go/src/time/sleep.go:215 +0x2d\n",
    ),
]


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def event(action: str, test: str = "", **fields: object) -> str:
    """One go test -json line, fields in the order test2json writes them."""
    parts = ['"Time":"2026-01-05T10:00:00.000000001Z"', f'"Action":"{action}"', '"Package":"example.com/p"']
    if test:
        parts.append(f'"Test":"{test}"')
    for name, value in fields.items():
        parts.append(f'"{name}":{json.dumps(value)}')
    return "{" + ",".join(parts) + "}\n"


class ParseResultsTest(unittest.TestCase):
    def test_fixtures_by_detected_format(self) -> None:
        for name, expected in [
            ("pytest.xml", PYTEST),
            ("surefire.xml", SUREFIRE),
            ("nested.xml", NESTED),
            ("go-test.json", GO_TEST),
            ("go-test-timeout.json", GO_TEST_TIMEOUT),
        ]:
            with self.subTest(name):
                self.assertEqual(parse_results(fixture(name)), expected)

    def test_leading_space_and_byte_order_mark(self) -> None:
        self.assertEqual(parse_results(b"\xef\xbb\xbf\n  " + fixture("nested.xml")), NESTED)
        self.assertEqual(parse_results(b"\n\n" + fixture("go-test-timeout.json")), GO_TEST_TIMEOUT)
        self.assertEqual(parse_results(b"\xef\xbb\xbf" + fixture("go-test-timeout.json")), GO_TEST_TIMEOUT)

    def test_go_stream_that_starts_with_plain_text(self) -> None:
        data = (
            b"go: downloading github.com/google/go-cmp v0.6.0\n"
            + event("run", "TestA").encode()
            + event("pass", "TestA", Elapsed=0.5).encode()
        )
        self.assertEqual(parse_results(data), [TestCase("example.com/p/TestA", "passed", 0.5, "")])

    def test_unknown_format(self) -> None:
        with self.assertRaises(ResultsError) as cm:
            parse_results(b"TAP version 13\n1..2\nok 1 - adds\nnot ok 2 - totals\n")
        self.assertEqual(
            str(cm.exception),
            "the test results are in an unknown format (they start with 'TAP version 13'): "
            "expected JUnit XML or go test -json output",
        )

    def test_unknown_format_with_a_long_first_line(self) -> None:
        with self.assertRaises(ResultsError) as cm:
            parse_results(b"x" * 300)
        self.assertEqual(
            str(cm.exception),
            f"the test results are in an unknown format (they start with '{'x' * 200}...'): "
            "expected JUnit XML or go test -json output",
        )

    def test_empty(self) -> None:
        for data in (b"", b" \n\t\n", b"\xef\xbb\xbf"):
            with self.subTest(data=data), self.assertRaises(ResultsError) as cm:
                parse_results(data)
            self.assertEqual(str(cm.exception), "the test results are empty: expected JUnit XML or go test -json output")


class ParseJUnitTest(unittest.TestCase):
    def test_fixtures(self) -> None:
        self.assertEqual(parse_junit(fixture("pytest.xml")), PYTEST)
        self.assertEqual(parse_junit(fixture("surefire.xml")), SUREFIRE)
        self.assertEqual(parse_junit(fixture("nested.xml")), NESTED)

    def test_names_statuses_and_outputs(self) -> None:
        data = b"""<testsuite name="misc">
  <testcase name="no classname" time="2"/>
  <testcase name="no time" classname=""/>
  <testcase name="only a type"><failure type="AssertionError"/></testcase>
  <testcase name="failed and skipped" classname="c" time=" 0.5 ">
    <skipped message="xfail"/>
    <failure message="first">one</failure>
    <error message="teardown">two</error>
  </testcase>
  <testcase name="same"/>
  <testcase name="same"/>
</testsuite>"""
        self.assertEqual(
            parse_junit(data),
            [
                TestCase("no classname", "passed", 2.0, ""),
                TestCase("no time", "passed", 0.0, ""),
                TestCase("only a type", "failed", 0.0, ""),
                TestCase("c.failed and skipped", "failed", 0.5, "first\none\nteardown\ntwo"),
                TestCase("same", "passed", 0.0, ""),
                TestCase("same", "passed", 0.0, ""),
            ],
        )

    def test_empty_suites(self) -> None:
        self.assertEqual(parse_junit(b'<?xml version="1.0"?>\n<testsuites/>'), [])
        self.assertEqual(parse_junit(b'<testsuite name="none" tests="0"></testsuite>'), [])

    def test_other_encodings_that_keep_ascii(self) -> None:
        data = '<?xml version="1.0" encoding="ISO-8859-1"?><testsuite><testcase name="café"/></testsuite>'
        self.assertEqual(parse_junit(data.encode("latin-1")), [TestCase("café", "passed", 0.0, "")])

    def test_truncated(self) -> None:
        data = fixture("pytest.xml")
        with self.assertRaises(ResultsError) as cm:
            parse_junit(data[: data.index(b'<testcase classname="tests.test_cart" ')])
        self.assertEqual(str(cm.exception), "the JUnit XML is not well-formed: no element found: line 16, column 292")
        with self.assertRaises(ResultsError) as cm:
            parse_results(b'<testsuites><testsuite name="x"><testcase name="a" time="0.1')
        self.assertEqual(str(cm.exception), "the JUnit XML is not well-formed: unclosed token: line 1, column 32")

    def test_dtd_is_refused(self) -> None:
        refused = (
            "the JUnit XML has a DTD (<!DOCTYPE or <!ENTITY), which is refused because its entities "
            "can expand without bound: write the report without one"
        )
        laughs = b"""<?xml version="1.0"?>
<!-- generated -->
<!DOCTYPE testsuites [
  <!ENTITY lol "lol">
  <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<testsuites><testsuite><testcase name="&lol3;"/></testsuite></testsuites>"""
        for data in (
            laughs,
            b'<!DOCTYPE testsuite SYSTEM "file:///etc/passwd"><testsuite/>',
            b'\xef\xbb\xbf<?xml version="1.0"?><?xml-stylesheet href="x.xsl"?>\n<!ENTITY x "y"><testsuite/>',
        ):
            with self.subTest(data=data[:40]):
                for parse in (parse_junit, parse_results):
                    with self.assertRaises(ResultsError) as cm:
                        parse(data)
                    self.assertEqual(str(cm.exception), refused)

    def test_undeclared_entity(self) -> None:
        with self.assertRaises(ResultsError) as cm:
            parse_junit(b'<testsuite><testcase name="&xxe;"/></testsuite>')
        self.assertEqual(str(cm.exception), "the JUnit XML is not well-formed: undefined entity: line 1, column 11")

    def test_utf16_is_refused(self) -> None:
        for data in (
            "<testsuite/>".encode("utf-16"),
            "<testsuite/>".encode("utf-16-le"),
            "<testsuite/>".encode("utf-16-be"),
        ):
            with self.subTest(data=data[:4]), self.assertRaises(ResultsError) as cm:
                parse_junit(data)
            self.assertEqual(str(cm.exception), "the JUnit XML is UTF-16 or UTF-32: write it as UTF-8")

    def test_other_root(self) -> None:
        with self.assertRaises(ResultsError) as cm:
            parse_results(b'<?xml version="1.0"?>\n<project><modelVersion>4.0.0</modelVersion></project>')
        self.assertEqual(
            str(cm.exception),
            "the XML is not JUnit XML: its root element is <project>, not <testsuites> or <testsuite>",
        )

    def test_bad_time_is_an_unknown_duration(self) -> None:
        for value in ("1,234.5", "nan", "-1", "inf", "soon"):
            with self.subTest(value):
                data = f'<testsuite><testcase classname="c" name="t" time="{value}"/></testsuite>'.encode()
                self.assertEqual(parse_junit(data), [TestCase("c.t", "passed", 0.0, "")])


class ParseGoTestJSONTest(unittest.TestCase):
    def test_fixtures(self) -> None:
        self.assertEqual(parse_go_test_json(fixture("go-test.json")), GO_TEST)
        self.assertEqual(parse_go_test_json(fixture("go-test-timeout.json")), GO_TEST_TIMEOUT)

    def test_stream_cut_off(self) -> None:
        # The container was killed: no result for the running test, nor for its package.
        data = fixture("go-test.json")
        cut = data[: data.index(b'"Output":"    cart_test.go:12')]
        cut = cut[: cut.rindex(b"\n") + 1]
        self.assertEqual(
            parse_go_test_json(cut),
            GO_TEST[:4]
            + [
                TestCase(
                    "example.com/shop/cart/TestTotal",
                    "failed",
                    0.0,
                    "no result: the test did not finish\n"
                    "=== RUN   TestTotal\n"
                    "    cart_test.go:11: computing total for 3 items\n",
                )
            ],
        )

    def test_os_exit_in_a_test(self) -> None:
        data = (
            event("start")
            + event("run", "TestExit")
            + event("output", "TestExit", Output="=== RUN   TestExit\n")
            + event("output", Output="FAIL\texample.com/p\t0.005s\n")
            + event("fail", Elapsed=0.005)
            + event("run", "TestNext")
        )
        self.assertEqual(
            parse_go_test_json(data.encode()),
            [
                TestCase("example.com/p/TestExit", "failed", 0.0, "no result: the test did not finish\n=== RUN   TestExit\n"),
                TestCase("example.com/p/TestNext", "failed", 0.0, "no result: the test did not finish"),
            ],
        )

    def test_parallel_tests_repeats_and_late_output(self) -> None:
        data = (
            event("run", "TestA")
            + event("output", "TestA", Output="=== RUN   TestA\n")
            + event("output", "TestA", Output="=== PAUSE TestA\n")
            + event("pause", "TestA")
            + event("run", "TestB")
            + event("output", "TestB", Output="=== RUN   TestB\n")
            + event("cont", "TestA")
            + event("output", "TestA", Output="=== CONT  TestA\n")
            + event("output", "TestB", Output="    b_test.go:9: boom\n")
            + event("fail", "TestB", Elapsed=1.5)
            + event("pass", "TestA", Elapsed=2)
            + event("output", "TestB", Output="panic: Log in goroutine after TestB has completed\n")
            + event("run", "TestA")
            + event("output", "TestA", Output="=== RUN   TestA\n")
            + event("fail", "TestA", Elapsed=0.25)
            + event("output", "BenchmarkOld", Output="--- BENCH: BenchmarkOld\n")
            + event("bench", "BenchmarkOld")
            + event("skip", "TestWithoutRun", Elapsed=0)
            + event("fail")
        )
        self.assertEqual(
            parse_go_test_json(data.encode()),
            [
                TestCase("example.com/p/TestA", "passed", 2.0, ""),
                TestCase("example.com/p/TestB", "failed", 1.5, "=== RUN   TestB\n    b_test.go:9: boom\n"),
                TestCase("example.com/p/TestA", "failed", 0.25, "=== RUN   TestA\n"),
                TestCase("example.com/p/BenchmarkOld", "passed", 0.0, ""),
                TestCase("example.com/p/TestWithoutRun", "skipped", 0.0, ""),
            ],
        )

    def test_odd_lines_are_skipped(self) -> None:
        data = (
            "\r\n"
            + event("run", "TestA").replace("\n", "\r\n")
            + '[{"Action":"run","Package":"example.com/p","Test":"TestInAList"}]\n'
            + '"a string"\n'
            + "{not json\n"
            + '{"a":' * 100_000
            + "\n"
            + '{"Action":"output","Package":"example.com/p","Test":"TestA","Output":"caf\\u00e9\\n"}\n'
            + '{"Action":"fail","Package":"example.com/p","Test":"TestA","Elapsed":"soon"}\n'
            + '{"Action":"run","Test":"TestNoPackage"}\n'
            + '{"Action":"pass","Test":"TestNoPackage","Elapsed":true}\n'
        )
        self.assertEqual(
            parse_go_test_json(data.encode() + b"\xff\xfe not utf-8\n"),
            [
                TestCase("example.com/p/TestA", "failed", 0.0, "caf\u00e9\n"),
                TestCase("TestNoPackage", "passed", 0.0, ""),
            ],
        )

    def test_no_tests(self) -> None:
        self.assertEqual(parse_go_test_json(b""), [])
        data = event("start") + event("output", Output="?   \texample.com/p\t[no test files]\n") + event("skip", Elapsed=0)
        self.assertEqual(parse_go_test_json(data.encode()), [])

    def test_build_error_as_text_is_a_failed_package(self) -> None:
        data = (
            b"# example.com/shop/broken [example.com/shop/broken.test]\n"
            b"broken/x_test.go:5:28: undefined: undefinedThing\n"
            + event("start").encode()
            + event("output", Output="FAIL\texample.com/p [build failed]\n").encode()
            + event("fail", Elapsed=0).encode()
        )
        for parse in (parse_go_test_json, parse_results):
            self.assertEqual(parse(data), [TestCase("example.com/p", "failed", 0.0, "FAIL\texample.com/p [build failed]\n")])

    def test_build_error_as_events_is_a_failed_package(self) -> None:
        # Go 1.24 and later report build errors as build-output events.
        data = (
            b"\n"
            b'{"ImportPath":"example.com/p [example.com/p.test]","Action":"build-output",'
            b'"Output":"# example.com/p [example.com/p.test]\\n"}\n'
            b'{"ImportPath":"example.com/p [example.com/p.test]","Action":"build-output",'
            b'"Output":"p_test.go:5:28: undefined: undefinedThing\\n"}\n'
            b'{"ImportPath":"example.com/p [example.com/p.test]","Action":"build-fail"}\n'
            + event("fail", Elapsed=0, FailedBuild="example.com/p [example.com/p.test]").encode()
        )
        self.assertEqual(
            parse_results(data),
            [TestCase("example.com/p", "failed", 0.0, "# example.com/p [example.com/p.test]\np_test.go:5:28: undefined: undefinedThing\n")],
        )

    def test_build_output_without_a_package_result(self) -> None:
        data = b'{"ImportPath":"example.com/p [example.com/p.test]","Action":"build-output","Output":"# example.com/p\\n"}\n'
        with self.assertRaises(ResultsError) as cm:
            parse_results(data)
        self.assertEqual(
            str(cm.exception),
            "the go test -json output has no test events, and its line 1 is build output: '# example.com/p'",
        )


if __name__ == "__main__":
    unittest.main()
