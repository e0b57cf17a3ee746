/* SPDX-License-Identifier: MIT */
#include <criterion/criterion.h>

#include "common/alg.h"
#include "common/time-util.h"

Test(duration, units) {
        usec_t d;
        cr_assert_eq(parse_duration("90s", &d), 0);
        cr_assert_eq(d, 90 * USEC_PER_SEC);
        cr_assert_eq(parse_duration("10m", &d), 0);
        cr_assert_eq(d, 600 * USEC_PER_SEC);
        cr_assert_eq(parse_duration("24h", &d), 0);
        cr_assert_eq(d, 86400 * USEC_PER_SEC);
        cr_assert_eq(parse_duration("7d", &d), 0);
        cr_assert_eq(d, 7 * 86400 * USEC_PER_SEC);
        cr_assert_eq(parse_duration("1", &d), 0, "a bare number is seconds");
        cr_assert_eq(d, USEC_PER_SEC);
}

Test(duration, refused) {
        usec_t d = 42;
        const char *bad[] = { "", "s", "0s", "0", "-1s", "+1s", " 1s", "1s ", "1.5h", "1ss", "h1",
                              "99999999999999999999d", "3651d", "0x10s", "1h30", "h", "1h 30m", "30m1h", "1h1h",
                              "1d1w", "0h0m", "1W", "522w", "3650d1s", "1h-30m", "1h30m " };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
                cr_assert_lt(parse_duration(bad[i], &d), 0, "'%s' should be refused", bad[i]);
                cr_assert_eq(d, 42, "'%s' wrote the output on failure", bad[i]);
        }
        cr_assert_lt(parse_duration(NULL, &d), 0);
}

/* Several units in one duration, largest first, and weeks. */
Test(duration, compound) {
        static const struct {
                const char *text;
                usec_t value;
        } good[] = {
                { "1h30m", 90 * 60 * USEC_PER_SEC },
                { "90s", 90 * USEC_PER_SEC },
                { "1w", 7 * 86400 * USEC_PER_SEC },
                { "2d12h", 60 * 3600 * USEC_PER_SEC },
                { "1w2d3h4m5s", ((9 * 24 + 3) * 3600 + 4 * 60 + 5) * USEC_PER_SEC },
                { "1h0m", 3600 * USEC_PER_SEC },
                { "0h1s", USEC_PER_SEC },
                { "521w3d", 3650LL * 86400 * USEC_PER_SEC },
                { "3649d23h59m60s", 3650LL * 86400 * USEC_PER_SEC },
                { "0001m", 60 * USEC_PER_SEC },
                { "315360000", 3650LL * 86400 * USEC_PER_SEC },
        };
        for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
                usec_t d = 0;
                cr_assert_eq(parse_duration(good[i].text, &d), 0, "'%s' refused", good[i].text);
                cr_assert_eq(d, good[i].value, "'%s': %lld", good[i].text, (long long) d);
        }
}

/* What is wrong, said for a person; -EINVAL for what is not a duration, -ERANGE for zero and too long. */
Test(duration, explained) {
        static const struct {
                const char *text;
                int r;
                const char *why;
        } bad[] = {
                { "1h30", -EINVAL, "the last number has no unit: write 1h30m, not 1h30" },
                { "h", -EINVAL, "a unit without a number before it: write 1h, not h" },
                { "1ss", -EINVAL, "a unit without a number before it: write 1h, not h" },
                { "10x", -EINVAL, "unknown unit: w, d, h, m or s, in lower case" },
                { "1H", -EINVAL, "unknown unit: w, d, h, m or s, in lower case" },
                { "30m1h", -EINVAL, "units go from the largest to the smallest, each once: w, d, h, m, s" },
                { "1m1m", -EINVAL, "units go from the largest to the smallest, each once: w, d, h, m, s" },
                { "1.5h", -EINVAL, "only whole numbers and units: no sign, fraction or blank" },
                { "-1s", -EINVAL, "only whole numbers and units: no sign, fraction or blank" },
                { "", -EINVAL, "empty: write a duration such as 90s, 1h30m or 2d12h" },
                { "0s", -ERANGE, "zero: at least 1s" },
                { "0", -ERANGE, "zero: at least 1s" },
                { "99999999999999999999999h", -ERANGE, "longer than 3650d" },
                { "18446744073709551615s", -ERANGE, "longer than 3650d" },
                { "3650d1s", -ERANGE, "longer than 3650d" },
                { "522w", -ERANGE, "longer than 3650d" },
                { "315360001", -ERANGE, "longer than 3650d" },
        };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
                const char *why = NULL;
                usec_t d = 42;
                cr_assert_eq(parse_duration_explain(bad[i].text, &d, &why), bad[i].r, "'%s'", bad[i].text);
                cr_assert_str_eq(why, bad[i].why, "'%s'", bad[i].text);
                cr_assert_eq(d, 42);
        }
}

Test(duration, format_round_trips) {
        const char *good[] = { "1s", "59s", "90s", "2m", "1h", "36h", "7d" };
        char buf[32];
        usec_t d;
        for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
                cr_assert_eq(parse_duration(good[i], &d), 0);
                format_duration(buf, sizeof buf, d);
                usec_t back;
                cr_assert_eq(parse_duration(buf, &back), 0);
                cr_assert_eq(back, d, "%s -> %s", good[i], buf);
        }
        cr_assert_str_eq(format_duration(buf, sizeof buf, 3600 * USEC_PER_SEC), "1h");
        cr_assert_str_eq(format_duration(buf, sizeof buf, 90 * USEC_PER_SEC), "90s");
        cr_assert_str_eq(format_duration(buf, sizeof buf, 7 * 86400 * USEC_PER_SEC), "7d", "no weeks in the output");
        cr_assert_str_eq(format_duration(buf, sizeof buf, 5400 * USEC_PER_SEC), "90m", "one unit, as before");
}

Test(uint64, range) {
        uint64_t v;
        cr_assert_eq(parse_uint64("18446744073709551615", UINT64_MAX, &v), 0);
        cr_assert_eq(v, UINT64_MAX);
        cr_assert_eq(parse_uint64("18446744073709551616", UINT64_MAX, &v), -ERANGE);
        cr_assert_eq(parse_uint64("300", 300, &v), 0);
        cr_assert_eq(parse_uint64("301", 300, &v), -ERANGE);
        cr_assert_eq(parse_uint64("-1", 300, &v), -EINVAL);
        cr_assert_eq(parse_uint64("", 300, &v), -EINVAL);
}

Test(rfc3339, epoch) {
        char buf[32];
        cr_assert_str_eq(format_rfc3339(buf, sizeof buf, 0), "1970-01-01T00:00:00Z");
        cr_assert_str_eq(format_rfc3339(buf, sizeof buf, 1700000000 * USEC_PER_SEC + 999999),
                         "2023-11-14T22:13:20Z");
}

/* One RFC 3339 parser for the API's query times and keydctl's instants (they had one each). */
Test(rfc3339, parse) {
        int64_t us;
        cr_assert_eq(parse_rfc3339_usec("2026-11-23T04:16:38Z", &us), 0);
        cr_assert_eq(us, INT64_C(1795407398) * 1000000);
        cr_assert_eq(parse_rfc3339_usec("2026-11-23t05:16:38.25+01:00", &us), 0, "lower t, a fraction, an offset");
        cr_assert_eq(us, INT64_C(1795407398) * 1000000 + 250000);
        cr_assert_eq(parse_rfc3339_usec("2026-11-22 23:16:38-05:00", &us), 0, "a blank for the T");
        cr_assert_eq(us, INT64_C(1795407398) * 1000000);
        cr_assert_eq(parse_rfc3339_usec("1969-12-31T23:59:59.5Z", &us), 0, "before the epoch");
        cr_assert_eq(us, -500000);
        static const char *const bad[] = { "", "2026-11-23", "2026-11-23T04:16:38", "2026-11-23T04:16:38+0100",
                                           "2026-13-23T04:16:38Z", "2026-11-23T24:16:38Z", "2026-11-23T04:16:38.Z",
                                           "2026-11-23T04:16:38Zx", "2026-11-23X04:16:38Z", "+026-11-23T04:16:38Z" };
        for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
                cr_assert_eq(parse_rfc3339_usec(bad[i], &us), -EINVAL, "'%s' refused", bad[i]);
}

Test(alg, names_round_trip) {
        for (int a = 0; a < _KEYD_ALG_MAX; a++)
                cr_assert_eq(keyd_alg_from_string(keyd_alg_to_string(a)), a);
        cr_assert_eq(keyd_alg_from_string("none"), _KEYD_ALG_INVALID);
        cr_assert_eq(keyd_alg_from_string("HS256"), _KEYD_ALG_INVALID);
        cr_assert_eq(keyd_alg_from_string("es256"), _KEYD_ALG_INVALID, "names are case-sensitive");
        cr_assert_null(keyd_alg_to_string(_KEYD_ALG_MAX));
        for (int s = 0; s < _KEY_STATE_MAX; s++)
                cr_assert_eq(key_state_from_string(key_state_to_string(s)), s);
        cr_assert_eq(key_state_from_string("bogus"), _KEY_STATE_INVALID);
}
