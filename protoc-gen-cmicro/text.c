/* protoc-gen-cmicro: memory helpers, text buffers and string lists. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gen.h"

#define WRAP_COLUMNS 100

static void
out_of_memory(void)
{
    fputs("protoc-gen-cmicro: out of memory\n", stderr);
    exit(1);
}

void *
xmalloc(size_t n)
{
    void *p = malloc(n == 0 ? 1 : n);

    if (p == NULL) {
        out_of_memory();
    }
    return p;
}

void *
xcalloc(size_t n, size_t size)
{
    void *p = calloc(n == 0 ? 1 : n, size == 0 ? 1 : size);

    if (p == NULL) {
        out_of_memory();
    }
    return p;
}

void *
xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n == 0 ? 1 : n);

    if (q == NULL) {
        out_of_memory();
    }
    return q;
}

char *
xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = xmalloc(n);

    memcpy(d, s, n);
    return d;
}

char *
xasprintf(const char *fmt, ...)
{
    sbuf b = {0};
    va_list ap;

    va_start(ap, fmt);
    sb_vprintf(&b, fmt, ap);
    va_end(ap);
    return sb_take(&b);
}

static void
sb_reserve(sbuf *b, size_t extra)
{
    size_t need = b->len + extra + 1;

    if (need <= b->cap) {
        return;
    }
    size_t cap = b->cap == 0 ? 256 : b->cap;
    while (cap < need) {
        cap *= 2;
    }
    b->data = xrealloc(b->data, cap);
    b->cap = cap;
}

void
sb_putc(sbuf *b, char c)
{
    sb_reserve(b, 1);
    b->data[b->len++] = c;
    b->data[b->len] = '\0';
}

void
sb_puts(sbuf *b, const char *s)
{
    size_t n = strlen(s);

    sb_reserve(b, n);
    memcpy(b->data + b->len, s, n + 1);
    b->len += n;
}

void
sb_vprintf(sbuf *b, const char *fmt, va_list ap)
{
    va_list cp;

    va_copy(cp, ap);
    int n = vsnprintf(NULL, 0, fmt, cp);
    va_end(cp);
    if (n < 0) {
        return;
    }
    sb_reserve(b, (size_t)n);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
}

void
sb_printf(sbuf *b, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    sb_vprintf(b, fmt, ap);
    va_end(ap);
}

const char *
sb_str(const sbuf *b)
{
    return b->data == NULL ? "" : b->data;
}

char *
sb_take(sbuf *b)
{
    char *s = b->data == NULL ? xstrdup("") : b->data;

    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    return s;
}

void
sb_free(sbuf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void
sb_wrap_call(sbuf *b, size_t indent, const char *head, const char *const *params,
             size_t nparams, const char *tail)
{
    size_t col = indent + strlen(head);
    size_t align = col;
    size_t tail_len = strcspn(tail, "\n");

    sb_puts(b, head);
    for (size_t i = 0; i < nparams; i++) {
        /* A parameter is followed by ',' or, for the last one, by the tail. */
        size_t need = strlen(params[i]) + (i + 1 < nparams ? 1 : tail_len);

        if (i > 0) {
            if (col + 1 + need > WRAP_COLUMNS) {
                sb_putc(b, '\n');
                for (size_t k = 0; k < align; k++) {
                    sb_putc(b, ' ');
                }
                col = align;
            } else {
                sb_putc(b, ' ');
                col++;
            }
        }
        sb_puts(b, params[i]);
        col += strlen(params[i]);
        if (i + 1 < nparams) {
            sb_putc(b, ',');
            col++;
        }
    }
    sb_puts(b, tail);
}

void
sb_comment(sbuf *b, size_t indent, const char *text)
{
    size_t col = indent + 2;
    const char *p = text;

    sb_puts(b, "/*");
    while (*p != '\0') {
        if (*p == '\n') {
            /* A forced break: an empty comment line for each extra newline. */
            p++;
            sb_putc(b, '\n');
            for (size_t k = 0; k < indent; k++) {
                sb_putc(b, ' ');
            }
            sb_puts(b, " *");
            col = indent + 2;
            continue;
        }
        if (*p == ' ') {
            p++;
            continue;
        }
        size_t n = strcspn(p, " \n");
        if (col + 1 + n > WRAP_COLUMNS && col > indent + 2) {
            sb_putc(b, '\n');
            for (size_t k = 0; k < indent; k++) {
                sb_putc(b, ' ');
            }
            sb_puts(b, " *");
            col = indent + 2;
        }
        sb_putc(b, ' ');
        for (size_t k = 0; k < n; k++) {
            sb_putc(b, p[k]);
        }
        col += 1 + n;
        p += n;
    }
    /* The closing mark goes on the last line when it fits. */
    if (col + 3 > WRAP_COLUMNS) {
        sb_putc(b, '\n');
        for (size_t k = 0; k < indent; k++) {
            sb_putc(b, ' ');
        }
    }
    sb_puts(b, " */\n");
}

void
strlist_add(strlist *l, const char *s)
{
    if (l->n == l->cap) {
        l->cap = l->cap == 0 ? 16 : l->cap * 2;
        l->items = xrealloc(l->items, l->cap * sizeof(*l->items));
    }
    l->items[l->n++] = xstrdup(s);
}

int
strlist_has(const strlist *l, const char *s)
{
    for (size_t i = 0; i < l->n; i++) {
        if (strcmp(l->items[i], s) == 0) {
            return 1;
        }
    }
    return 0;
}

void
strlist_free(strlist *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->items[i]);
    }
    free(l->items);
    l->items = NULL;
    l->n = 0;
    l->cap = 0;
}
