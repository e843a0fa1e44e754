/* W3C Trace Context: the spec's traceparent and tracestate examples, strict refusal of bad
 * input (versions, case, lengths, zero ids, huge values), child spans and new traces with ids
 * that differ across calls, threads and a fork, and the tracestate bounds. */
#include "test.h"

#include <cmicro/trace.h>
#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>

#define TP "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

static int
parse(const char *s, cm_trace_ctx *c)
{
    return cm_trace_parse(s, strlen(s), c);
}

static const char *
format(const cm_trace_ctx *c)
{
    static char buf[CM_TRACEPARENT_LEN + 1];
    cm_trace_format(c, buf);
    return buf;
}

static void
test_parse_spec_examples(void)
{
    cm_trace_ctx c;
    CHECK_EQ_INT(parse(TP, &c), 0);
    static const uint8_t tid[] = {0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6,
                                  0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36};
    static const uint8_t sid[] = {0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7};
    CHECK(memcmp(c.trace_id, tid, 16) == 0);
    CHECK(memcmp(c.span_id, sid, 8) == 0);
    CHECK_EQ_INT(c.flags, CM_TRACE_SAMPLED);
    CHECK_EQ_STR(format(&c), TP);
    char hex[33];
    cm_trace_id_hex(&c, hex);
    CHECK_EQ_STR(hex, "4bf92f3577b34da6a3ce929d0e0e4736");
    cm_span_id_hex(&c, hex);
    CHECK_EQ_STR(hex, "00f067aa0ba902b7");

    CHECK_EQ_INT(parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", &c), 0);
    CHECK_EQ_INT(c.flags, 0);
    /* Spaces and tabs around the value (optional whitespace of the header). */
    CHECK_EQ_INT(parse(" \t" TP "\t ", &c), 0);
    CHECK_EQ_STR(format(&c), TP);
    /* Not NUL-terminated: the length counts. */
    CHECK_EQ_INT(cm_trace_parse(TP "garbage", CM_TRACEPARENT_LEN, &c), 0);
    /* Unknown flags are read as received. */
    CHECK_EQ_INT(parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-ff", &c), 0);
    CHECK_EQ_INT(c.flags, 0xff);

    /* A later version: the four fields read as 00's, what follows a '-' ignored; written back
     * as version 00. */
    CHECK_EQ_INT(parse("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-"
                       "will-be-like",
                       &c),
                 0);
    CHECK_EQ_STR(format(&c), TP);
    CHECK_EQ_INT(parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", &c), 0);
    CHECK_EQ_STR(format(&c), TP);
}

static void
test_parse_refuses(void)
{
    static const char *const bad[] = {
        "",
        "00",
        TP "-",                                                    /* 00 is exactly 55 */
        TP "0",                                                    /* 00 is exactly 55 */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",  /* short */
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", /* version ff */
        "0A-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", /* uppercase version */
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", /* uppercase trace id */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01", /* uppercase parent id */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0A", /* uppercase flags */
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01", /* zero trace id */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", /* zero parent id */
        "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01", /* not hex */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-g1",
        "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", /* separators */
        "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7_01",
        "00-4bf92f3577b34da6a3ce929d0e0e47366-00f067aa0ba902b7-01", /* a field too long */
        "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
        "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01.", /* later: needs a '-' */
        "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
        "-00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\n", /* not OWS */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7- 1",
    };
    cm_trace_ctx c, before;
    CHECK_EQ_INT(parse(TP, &before), 0);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        c = before;
        if (parse(bad[i], &c) != CM_EINVAL) {
            fprintf(stderr, "accepted: \"%s\"\n", bad[i]);
            CHECK(0);
        }
        CHECK(memcmp(&c, &before, sizeof c) == 0); /* out untouched */
    }
    CHECK_EQ_INT(cm_trace_parse(NULL, 55, &c), CM_EINVAL);
    /* An embedded NUL. */
    CHECK_EQ_INT(cm_trace_parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0\0", 55, &c),
                 CM_EINVAL);
    /* Huge values: version 00 with a megabyte after it, and a megabyte of garbage. */
    static char huge[1 << 20];
    memset(huge, 'a', sizeof huge);
    memcpy(huge, TP, CM_TRACEPARENT_LEN);
    CHECK_EQ_INT(cm_trace_parse(huge, sizeof huge, &c), CM_EINVAL);
    huge[CM_TRACEPARENT_LEN] = '-';
    CHECK_EQ_INT(cm_trace_parse(huge, sizeof huge, &c), CM_EINVAL);
    huge[0] = '4'; /* version 40: a later version may be that long */
    CHECK_EQ_INT(cm_trace_parse(huge, sizeof huge, &c), 0);
    CHECK_EQ_STR(format(&c), TP);
    memset(huge, '-', sizeof huge);
    CHECK_EQ_INT(cm_trace_parse(huge, sizeof huge, &c), CM_EINVAL);
}

static void
test_child_and_new(void)
{
    cm_trace_ctx parent, child;
    CHECK_EQ_INT(parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-ff", &parent), 0);
    CHECK_EQ_INT(cm_trace_child(&parent, &child), 0);
    CHECK(memcmp(child.trace_id, parent.trace_id, CM_TRACE_ID_SIZE) == 0);
    CHECK(memcmp(child.span_id, parent.span_id, CM_SPAN_ID_SIZE) != 0);
    /* Sampled and random kept, the reserved bits sent as zero. */
    CHECK_EQ_INT(child.flags, CM_TRACE_SAMPLED | CM_TRACE_RANDOM);
    parent.flags = 0;
    CHECK_EQ_INT(cm_trace_child(&parent, &parent), 0); /* in place */
    CHECK_EQ_INT(parent.flags, 0);
    CHECK(memcmp(child.trace_id, parent.trace_id, CM_TRACE_ID_SIZE) == 0);
    CHECK(memcmp(child.span_id, parent.span_id, CM_SPAN_ID_SIZE) != 0);
    cm_trace_ctx back;
    CHECK_EQ_INT(parse(format(&child), &back), 0);
    CHECK(memcmp(&back, &child, sizeof back) == 0);

    /* New traces: 2000 of them (several refills of the pool), all ids different. */
    static uint8_t seen[2000][CM_TRACE_ID_SIZE + CM_SPAN_ID_SIZE];
    for (int i = 0; i < 2000; i++) {
        cm_trace_ctx c;
        CHECK_EQ_INT(cm_trace_new(&c, CM_TRACE_SAMPLED | CM_TRACE_RANDOM), 0);
        CHECK_EQ_INT(c.flags, 3);
        CHECK_EQ_INT(parse(format(&c), &back), 0); /* ids never zero */
        memcpy(seen[i], c.trace_id, CM_TRACE_ID_SIZE);
        memcpy(seen[i] + CM_TRACE_ID_SIZE, c.span_id, CM_SPAN_ID_SIZE);
        for (int j = 0; j < i; j++) {
            CHECK(memcmp(seen[i], seen[j], CM_TRACE_ID_SIZE) != 0);
            CHECK(memcmp(seen[i] + CM_TRACE_ID_SIZE, seen[j] + CM_TRACE_ID_SIZE, CM_SPAN_ID_SIZE) !=
                  0);
        }
    }
    CHECK_EQ_INT(cm_trace_new(NULL, 0), CM_EINVAL);
    CHECK_EQ_INT(cm_trace_child(NULL, &child), CM_EINVAL);
}

static void *
new_in_thread(void *arg)
{
    if (cm_trace_new(arg, 1) != 0) { /* not CHECK: its counter is not atomic */
        abort();
    }
    return NULL;
}

static void
test_threads_and_fork(void)
{
    /* Each thread draws its own bytes. */
    cm_trace_ctx a, b;
    pthread_t t1, t2;
    CHECK_EQ_INT(pthread_create(&t1, NULL, new_in_thread, &a), 0);
    CHECK_EQ_INT(pthread_create(&t2, NULL, new_in_thread, &b), 0);
    CHECK_EQ_INT(pthread_join(t1, NULL), 0);
    CHECK_EQ_INT(pthread_join(t2, NULL), 0);
    CHECK(memcmp(a.trace_id, b.trace_id, CM_TRACE_ID_SIZE) != 0);

    /* After a fork the child must not hand out the ids left in the parent's pool. */
    CHECK_EQ_INT(cm_trace_new(&a, 1), 0); /* the pool holds bytes now */
    int fds[2];
    CHECK_EQ_INT(pipe(fds), 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        cm_trace_ctx c;
        int ok = cm_trace_new(&c, 1) == 0 && write(fds[1], &c, sizeof c) == (ssize_t)sizeof c;
        _exit(ok ? 0 : 1);
    }
    close(fds[1]);
    cm_trace_ctx parent_next, child_next;
    CHECK_EQ_INT(cm_trace_new(&parent_next, 1), 0);
    CHECK_EQ_INT(read(fds[0], &child_next, sizeof child_next), sizeof child_next);
    close(fds[0]);
    int status;
    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(memcmp(parent_next.trace_id, child_next.trace_id, CM_TRACE_ID_SIZE) != 0);
    CHECK(memcmp(parent_next.span_id, child_next.span_id, CM_SPAN_ID_SIZE) != 0);
}

/* ---- tracestate ---- */

static const char *
clean(const char *s)
{
    static char out[CM_TRACESTATE_MAX_LEN + 1];
    size_t n = cm_tracestate_clean(s, strlen(s), out);
    CHECK_EQ_INT(n, strlen(out));
    return out;
}

static void
test_tracestate_valid(void)
{
    CHECK_EQ_STR(clean("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"),
                 "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
    CHECK_EQ_STR(clean("congo=ucfJifl5GOE,rojo=00f067aa0ba902b7"),
                 "congo=ucfJifl5GOE,rojo=00f067aa0ba902b7");
    /* Optional whitespace and empty members (two header lines joined) are left out. */
    CHECK_EQ_STR(clean(" rojo=00f067aa0ba902b7 ,\t, congo=t61rcWkgMzE\t,"),
                 "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
    CHECK_EQ_STR(clean(""), "");
    CHECK_EQ_STR(clean(" , ,"), "");
    /* Multi-tenant keys, the key and value alphabets, a value with inner spaces. */
    CHECK_EQ_STR(clean("fw529a3039@dt=WzE1OSwxNTksImF,0x@a-b_c*d/e=x y!~"),
                 "fw529a3039@dt=WzE1OSwxNTksImF,0x@a-b_c*d/e=x y!~");
    CHECK_EQ_STR(clean("a_-*/09=1,a@b_-*/09abcdefg=2"), "a_-*/09=1,a@b_-*/09abcdefg=2");
    /* Longest key (256) and value (256). */
    char s[600];
    memset(s, 'k', 256);
    s[256] = '=';
    memset(s + 257, 'v', 256);
    s[513] = '\0';
    CHECK_EQ_INT(cm_tracestate_clean(s, 513, (char[CM_TRACESTATE_MAX_LEN + 1]){0}), 0);
    /* ...is one member of 513 characters, over the 512 bound alone: nothing is kept. A shorter
     * value fits. */
    s[511] = '\0';
    CHECK_EQ_INT(strlen(clean(s)), 511);
}

static void
test_tracestate_invalid(void)
{
    static const char *const bad[] = {
        "Rojo=1",              /* uppercase key */
        "rojo=1,ROJO=2",       /* one bad member drops all */
        "1rojo=1",             /* a simple key starts with a letter */
        "rojo",                /* no '=' */
        "rojo=",               /* empty value */
        "=1",                  /* empty key */
        "rojo=a=b",            /* '=' in a value */
        "rojo=caf\xc3\xa9",    /* not ASCII */
        "rojo=a\x01",          /* control character */
        "rojo=1,rojo=2",       /* a key twice */
        "@dt=1",               /* empty tenant */
        "t@=1",                /* empty system */
        "t@1dt=1",             /* a system id starts with a letter */
        "t@abcdefghijklmno=1", /* system id of 15 */
        "t@a@b=1",
        "ro.jo=1",
        "ro jo=1",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (strcmp(clean(bad[i]), "") != 0) {
            fprintf(stderr, "accepted: \"%s\"\n", bad[i]);
            CHECK(0);
        }
    }
    char s[1000];
    memset(s, 'k', 257); /* key of 257 */
    strcpy(s + 257, "=1");
    CHECK_EQ_STR(clean(s), "");
    s[0] = 't';
    s[241] = '@'; /* tenant of 241 is fine, system of 15 is not */
    memcpy(s + 242, "abcdefghijklmno=1", 18);
    CHECK_EQ_STR(clean(s), "");
    strcpy(s + 242, "abcdefghijklmn=1");
    CHECK_EQ_INT(strlen(clean(s)), 258);
    strcpy(s, "k=");
    memset(s + 2, 'v', 257); /* value of 257 */
    s[259] = '\0';
    CHECK_EQ_STR(clean(s), "");

    /* A megabyte: of one member, of members, of commas. */
    static char huge[1 << 20];
    memset(huge, 'v', sizeof huge);
    memcpy(huge, "k=", 2);
    char out[CM_TRACESTATE_MAX_LEN + 1];
    CHECK_EQ_INT(cm_tracestate_clean(huge, sizeof huge, out), 0);
    for (size_t i = 0; i + 4 <= sizeof huge; i += 4) {
        memcpy(huge + i, "a=b,", 4);
    }
    CHECK_EQ_INT(cm_tracestate_clean(huge, sizeof huge, out), 0); /* a=b twice */
    memset(huge, ',', sizeof huge);
    CHECK_EQ_INT(cm_tracestate_clean(huge, sizeof huge, out), 0);
    CHECK_EQ_STR(out, "");
    CHECK_EQ_INT(cm_tracestate_clean(NULL, 3, out), 0);
}

static void
test_tracestate_bounds(void)
{
    char s[4096], want[4096];
    size_t n = 0;
    /* 32 members of 20 characters: valid, but 671 characters; the last ones go. */
    for (int i = 0; i < 32; i++) {
        n += (size_t)snprintf(s + n, sizeof s - n, "%sk%02d=%016d", i ? "," : "", i, i);
    }
    const char *got = clean(s);
    /* 24 members are 24 * 20 + 23 = 503 characters; 25 would be 524. */
    memcpy(want, s, 503);
    want[503] = '\0';
    CHECK_EQ_STR(got, want);
    /* A 33rd member makes the whole invalid. */
    strcat(s, ",k32=1");
    CHECK_EQ_STR(clean(s), "");

    /* Over 512: members over 128 characters go first, then from the end. */
    n = (size_t)snprintf(s, sizeof s, "a=1,");
    n += (size_t)snprintf(s + n, sizeof s - n, "big=");
    memset(s + n, 'x', 200);
    n += 200;
    n += (size_t)snprintf(s + n, sizeof s - n, ",b=2,");
    n += (size_t)snprintf(s + n, sizeof s - n, "big2=");
    memset(s + n, 'y', 200);
    n += 200;
    n += (size_t)snprintf(s + n, sizeof s - n, ",c=3,small=");
    memset(s + n, 'z', 100);
    n += 100;
    s[n] = '\0';
    /* 3 + 204 + 3 + 205 + 3 + 106 and 5 commas = 529: dropping big is enough. */
    got = clean(s);
    CHECK(strncmp(got, "a=1,b=2,big2=yyy", 16) == 0);
    CHECK(strstr(got, "big=") == NULL);
    CHECK(strstr(got, ",c=3,small=zzz") != NULL);
    CHECK_EQ_INT(strlen(got), 529 - 205);
}

int
main(void)
{
    RUN(test_parse_spec_examples);
    RUN(test_parse_refuses);
    RUN(test_child_and_new);
    RUN(test_threads_and_fork);
    RUN(test_tracestate_valid);
    RUN(test_tracestate_invalid);
    RUN(test_tracestate_bounds);
    TEST_DONE();
}
