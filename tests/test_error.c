/* SPDX-License-Identifier: BSD-3-Clause */
/* Status codes and error objects. */
#include <string.h>

#include "disco.h"
#include "test_util.h"

static void test_strerror_and_names(void **state)
{
    (void)state;
    assert_string_equal(disco_strerror(DISCO_OK), "success");
    assert_string_equal(disco_strerror(DISCO_ECLOSED), "channel closed");
    assert_string_equal(disco_strerror(DISCO_ENOMEM), "out of memory");
    assert_string_equal(disco_strerror(12345), "unknown error");
    assert_string_equal(disco_status_name(DISCO_ETIMEDOUT), "DISCO_ETIMEDOUT");
    assert_string_equal(disco_status_name(DISCO_ENOWAIT), "DISCO_ENOWAIT");
    assert_string_equal(disco_strerror(DISCO_ENOWAIT), "a no-wait function cannot wait");
    assert_string_equal(disco_status_name(-999999), "DISCO_UNKNOWN");
    assert_int_equal(DISCO_ENOMEM, -ENOMEM);
    assert_true(DISCO_ECLOSED < -DISCO_ERRNO_OFFSET);
}

static void test_error_object(void **state)
{
    (void)state;
    disco_error *e = disco_error_new(DISCO_EINVAL, "bad %s %d", "thing", 7);
    assert_non_null(e);
    assert_int_equal(disco_error_code(e), DISCO_EINVAL);
    assert_string_equal(disco_error_message(e), "bad thing 7");
    assert_int_equal(disco_error_pid(e), 0);
    assert_int_equal(disco_error_count(e), 0);
    assert_null(disco_error_nested(e, 0));
    disco_error *c = disco_error_copy(e);
    assert_string_equal(disco_error_message(c), "bad thing 7");
    disco_error_free(c);
    disco_error_free(e);
    disco_error_free(NULL);
}

static void test_composite_format(void **state)
{
    (void)state;
    disco_error *parts[2] = {disco_error_new(DISCO_EIO, "first broke"),
                             disco_error_new(DISCO_ETIMEDOUT, "second slow")};
    disco_error *c = disco_error_composite(parts, 2);
    assert_int_equal(disco_error_code(c), DISCO_ECOMPOSITE);
    assert_int_equal(disco_error_count(c), 2);
    assert_string_equal(disco_error_message(disco_error_nested(c, 1)),
                        "second slow");
    char buf[256];
    size_t need = disco_error_format(c, buf, sizeof(buf));
    assert_int_equal(need, strlen(buf));
    assert_non_null(strstr(buf, "2 tasks failed"));
    assert_non_null(strstr(buf, "[1] first broke"));
    assert_non_null(strstr(buf, "[2] second slow"));
    /* Truncation still reports the full length and terminates. */
    char small[8];
    assert_int_equal(disco_error_format(c, small, sizeof(small)), need);
    assert_int_equal(strlen(small), sizeof(small) - 1);
    disco_error *copy = disco_error_copy(c);
    assert_int_equal(disco_error_count(copy), 2);
    disco_error_free(copy);
    disco_error_free(c);
}

static void test_last_error_slot(void **state)
{
    (void)state;
    disco_error_clear();
    assert_null(disco_last_error());
    assert_int_equal(disco_error_set(DISCO_EBUSY, "busy %d", 1), DISCO_EBUSY);
    assert_int_equal(disco_error_code(disco_last_error()), DISCO_EBUSY);
    assert_string_equal(disco_error_message(disco_last_error()), "busy 1");
    disco_error *e = disco_error_take();
    assert_null(disco_last_error());
    assert_int_equal(disco_error_put(e), DISCO_EBUSY);
    assert_ptr_equal(disco_last_error(), e);
    disco_error_clear();
    assert_null(disco_last_error());
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strerror_and_names),
        cmocka_unit_test(test_error_object),
        cmocka_unit_test(test_composite_format),
        cmocka_unit_test(test_last_error_slot),
    };
    return cmocka_run_group_tests_name("error", tests, NULL, NULL);
}
