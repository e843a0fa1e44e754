/* cmicro: the DNS messages of the mDNS registry backend, built with ldns: the records a
 * responder serves (go-micro's util/mdns zone.go) and queries. Also the backend's log lines.
 * No sockets here. */
#include "mdns_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define QU_BIT 0x8000
#define DOMAIN "micro"

/* ---- names ---- */

/* A service name without leading and trailing dots (go-micro's trimDot), as "%.*s". */
static void
trim_dots(const char *s, const char **start, int *len)
{
    size_t n = strlen(s);
    while (n > 0 && *s == '.') {
        s++;
        n--;
    }
    while (n > 0 && s[n - 1] == '.') {
        n--;
    }
    *start = s;
    *len = (int)n;
}

static int make_dname(ldns_rdf **out, const char *fmt, ...) CM_PRINTF(2, 3);

static int
make_dname(ldns_rdf **out, const char *fmt, ...)
{
    char buf[1100];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    *out = NULL;
    if (n < 0 || (size_t)n >= sizeof buf) {
        return CM_EINVAL;
    }
    ldns_status s = ldns_str2rdf_dname(out, buf);
    if (s == LDNS_STATUS_MEM_ERR) {
        return CM_ENOMEM;
    }
    if (s != LDNS_STATUS_OK || *out == NULL) {
        ldns_rdf_deep_free(*out);
        *out = NULL;
        return CM_EINVAL;
    }
    return 0;
}

static int
dname_eq(const ldns_rdf *a, const ldns_rdf *b)
{
    return a != NULL && b != NULL && ldns_rdf_get_type(a) == LDNS_RDF_TYPE_DNAME &&
           ldns_dname_compare(a, b) == 0;
}

/* ---- zones ---- */

int
cm__mdns_zone_init(cm__mdns_zone *z, const char *instance, const char *service, const char *host,
                   uint16_t port, int family, const uint8_t ip[16], const char *txt, size_t txtlen)
{
    memset(z, 0, sizeof *z);
    const char *svc;
    int svclen;
    trim_dots(service, &svc, &svclen);
    int rc = make_dname(&z->service_addr, "%.*s." DOMAIN ".", svclen, svc);
    if (rc == 0) {
        rc = make_dname(&z->instance_addr, "%s.%.*s." DOMAIN ".", instance, svclen, svc);
    }
    if (rc == 0) {
        rc = make_dname(&z->enum_addr, "_services._dns-sd._udp." DOMAIN ".");
    }
    if (rc == 0) {
        rc = make_dname(&z->host, "%s", host);
    }
    if (rc == 0 && txt != NULL) {
        z->txt = malloc(txtlen + 1);
        if (z->txt == NULL) {
            rc = CM_ENOMEM;
        } else {
            memcpy(z->txt, txt, txtlen);
            z->txt[txtlen] = '\0';
            z->txtlen = txtlen;
        }
    }
    if (rc != 0) {
        cm__mdns_zone_fini(z);
        return rc;
    }
    z->port = port;
    z->family = family;
    memcpy(z->ip, ip, 16);
    return 0;
}

void
cm__mdns_zone_fini(cm__mdns_zone *z)
{
    ldns_rdf_deep_free(z->service_addr);
    ldns_rdf_deep_free(z->instance_addr);
    ldns_rdf_deep_free(z->enum_addr);
    ldns_rdf_deep_free(z->host);
    free(z->txt);
    memset(z, 0, sizeof *z);
}

/* A new record owned by a clone of owner; NULL on out of memory. */
static ldns_rr *
new_rr(const ldns_rdf *owner, ldns_rr_type type, uint32_t ttl)
{
    ldns_rr *rr = ldns_rr_new();
    ldns_rdf *o = ldns_rdf_clone(owner);
    if (rr == NULL || o == NULL) {
        ldns_rr_free(rr);
        ldns_rdf_deep_free(o);
        return NULL;
    }
    ldns_rr_set_owner(rr, o);
    ldns_rr_set_type(rr, type);
    ldns_rr_set_class(rr, LDNS_RR_CLASS_IN);
    ldns_rr_set_ttl(rr, ttl);
    return rr;
}

/* Adds rdf to rr, taking it; frees rdf on failure. 0 or CM_ENOMEM. */
static int
push_rdf(ldns_rr *rr, ldns_rdf *rdf)
{
    if (rdf == NULL) {
        return CM_ENOMEM;
    }
    if (!ldns_rr_push_rdf(rr, rdf)) {
        ldns_rdf_deep_free(rdf);
        return CM_ENOMEM;
    }
    return 0;
}

/* Appends rr to out, taking it; frees rr on failure. 0 or CM_ENOMEM. */
static int
push_rr(ldns_rr_list *out, ldns_rr *rr, int rc)
{
    if (rc == 0 && rr != NULL && ldns_rr_list_push_rr(out, rr)) {
        return 0;
    }
    ldns_rr_free(rr);
    return CM_ENOMEM;
}

static int
add_ptr(ldns_rr_list *out, const ldns_rdf *owner, const ldns_rdf *target, uint32_t ttl)
{
    ldns_rr *rr = new_rr(owner, LDNS_RR_TYPE_PTR, ttl);
    int rc = rr == NULL ? CM_ENOMEM : push_rdf(rr, ldns_rdf_clone(target));
    return push_rr(out, rr, rc);
}

static int
add_address(const cm__mdns_zone *z, ldns_rr_type type, uint32_t ttl, ldns_rr_list *out)
{
    int v4 = type == LDNS_RR_TYPE_A;
    if ((v4 && z->family != AF_INET) || (!v4 && z->family != AF_INET6)) {
        return 0;
    }
    ldns_rr *rr = new_rr(z->host, type, ttl);
    int rc = rr == NULL
                 ? CM_ENOMEM
                 : push_rdf(rr, ldns_rdf_new_frm_data(v4 ? LDNS_RDF_TYPE_A : LDNS_RDF_TYPE_AAAA,
                                                      v4 ? 4 : 16, z->ip));
    return push_rr(out, rr, rc);
}

static int
add_srv(const cm__mdns_zone *z, uint32_t ttl, ldns_rr_list *out)
{
    ldns_rr *rr = new_rr(z->instance_addr, LDNS_RR_TYPE_SRV, ttl);
    int rc = rr == NULL ? CM_ENOMEM : 0;
    if (rc == 0) {
        rc = push_rdf(rr, ldns_native2rdf_int16(LDNS_RDF_TYPE_INT16, 10));
    }
    if (rc == 0) {
        rc = push_rdf(rr, ldns_native2rdf_int16(LDNS_RDF_TYPE_INT16, 1));
    }
    if (rc == 0) {
        rc = push_rdf(rr, ldns_native2rdf_int16(LDNS_RDF_TYPE_INT16, z->port));
    }
    if (rc == 0) {
        rc = push_rdf(rr, ldns_rdf_clone(z->host));
    }
    return push_rr(out, rr, rc);
}

static int
add_txt(const cm__mdns_zone *z, uint32_t ttl, ldns_rr_list *out)
{
    ldns_rr *rr = new_rr(z->instance_addr, LDNS_RR_TYPE_TXT, ttl);
    int rc = rr == NULL ? CM_ENOMEM : 0;
    for (size_t off = 0; rc == 0 && z->txt != NULL && off < z->txtlen; off += CM__MDNS_TXT_CHUNK) {
        size_t n = z->txtlen - off;
        if (n > CM__MDNS_TXT_CHUNK) {
            n = CM__MDNS_TXT_CHUNK;
        }
        uint8_t s[CM__MDNS_TXT_CHUNK + 1];
        s[0] = (uint8_t)n;
        memcpy(s + 1, z->txt + off, n);
        rc = push_rdf(rr, ldns_rdf_new_frm_data(LDNS_RDF_TYPE_STR, n + 1, s));
    }
    return push_rr(out, rr, rc);
}

/* The records of the instance for a question of type type (go-micro's instanceRecords). */
static int
instance_records(const cm__mdns_zone *z, ldns_rr_type type, uint32_t ttl, ldns_rr_list *out)
{
    int rc = 0;
    switch (type) {
    case LDNS_RR_TYPE_ANY:
        rc = instance_records(z, LDNS_RR_TYPE_SRV, ttl, out);
        return rc == 0 ? instance_records(z, LDNS_RR_TYPE_TXT, ttl, out) : rc;
    case LDNS_RR_TYPE_SRV:
        rc = add_srv(z, ttl, out);
        if (rc == 0) {
            rc = add_address(z, LDNS_RR_TYPE_A, ttl, out);
        }
        return rc == 0 ? add_address(z, LDNS_RR_TYPE_AAAA, ttl, out) : rc;
    case LDNS_RR_TYPE_A:
    case LDNS_RR_TYPE_AAAA:
        return add_address(z, type, ttl, out);
    case LDNS_RR_TYPE_TXT:
        return add_txt(z, ttl, out);
    default:
        return 0;
    }
}

/* The records z serves for a question (go-micro's MDNSService.Records). */
static int
zone_records(const cm__mdns_zone *z, const ldns_rdf *name, ldns_rr_type type, uint32_t ttl,
             ldns_rr_list *out)
{
    int ptr = type == LDNS_RR_TYPE_PTR || type == LDNS_RR_TYPE_ANY;
    if (dname_eq(name, z->enum_addr)) {
        return ptr ? add_ptr(out, name, z->service_addr, ttl) : 0;
    }
    if (dname_eq(name, z->service_addr)) {
        if (!ptr) {
            return 0;
        }
        int rc = add_ptr(out, name, z->instance_addr, ttl);
        return rc == 0 ? instance_records(z, LDNS_RR_TYPE_ANY, ttl, out) : rc;
    }
    if (dname_eq(name, z->instance_addr)) {
        return instance_records(z, type, ttl, out);
    }
    if (!z->wildcard && dname_eq(name, z->host) &&
        (type == LDNS_RR_TYPE_A || type == LDNS_RR_TYPE_AAAA)) {
        return instance_records(z, type, ttl, out);
    }
    return 0;
}

/* Wraps questions (cloned, may be NULL) and answers (taken, list freed) into a response
 * datagram. */
static int
response_wire(uint16_t id, const ldns_rr_list *questions, ldns_rr_list *answers, uint8_t **wire,
              size_t *len)
{
    int rc = 0;
    ldns_pkt *pkt = ldns_pkt_new();
    if (pkt == NULL) {
        ldns_rr_list_deep_free(answers);
        return CM_ENOMEM;
    }
    ldns_pkt_set_id(pkt, id);
    ldns_pkt_set_qr(pkt, true);
    ldns_pkt_set_aa(pkt, true);
    for (size_t i = 0; questions != NULL && i < ldns_rr_list_rr_count(questions); i++) {
        ldns_rr *q = ldns_rr_clone(ldns_rr_list_rr(questions, i));
        if (q == NULL || !ldns_pkt_push_rr(pkt, LDNS_SECTION_QUESTION, q)) {
            ldns_rr_free(q);
            rc = CM_ENOMEM;
            break;
        }
    }
    /* The packet takes the records it accepted; the others are freed here. */
    size_t n = ldns_rr_list_rr_count(answers), i = 0;
    for (; rc == 0 && i < n; i++) {
        if (!ldns_pkt_push_rr(pkt, LDNS_SECTION_ANSWER, ldns_rr_list_rr(answers, i))) {
            rc = CM_ENOMEM;
            break;
        }
    }
    for (; i < n; i++) {
        ldns_rr_free(ldns_rr_list_rr(answers, i));
    }
    ldns_rr_list_free(answers);
    if (rc == 0 && ldns_pkt2wire(wire, pkt, len) != LDNS_STATUS_OK) {
        rc = CM_ENOMEM;
        *wire = NULL;
    }
    ldns_pkt_free(pkt);
    return rc;
}

/* Whether a question of q's name and type was answered already. */
static int
asked_before(const ldns_rr_list *asked, const ldns_rr *q)
{
    for (size_t i = 0; i < ldns_rr_list_rr_count(asked); i++) {
        const ldns_rr *r = ldns_rr_list_rr(asked, i);
        if (ldns_rr_get_type(r) == ldns_rr_get_type(q) &&
            ldns_dname_compare(ldns_rr_owner(r), ldns_rr_owner(q)) == 0) {
            return 1;
        }
    }
    return 0;
}

/* Moves the records of fresh that answers does not hold yet into answers; frees the others and
 * fresh. 0 or CM_ENOMEM. */
static int
merge_fresh(ldns_rr_list *answers, ldns_rr_list *fresh)
{
    int rc = 0;
    for (size_t i = 0; i < ldns_rr_list_rr_count(fresh); i++) {
        ldns_rr *rr = ldns_rr_list_rr(fresh, i);
        if (rc == 0 && !ldns_rr_list_contains_rr(answers, rr)) {
            rc = push_rr(answers, rr, 0); /* frees rr on failure */
        } else {
            ldns_rr_free(rr);
        }
    }
    ldns_rr_list_free(fresh);
    return rc;
}

/* The records z serves for the first maxq distinct questions of query it answers, each record
 * once, into answers; those questions (borrowed from query) into asked. */
static int
collect_answers(const cm__mdns_zone *z, const ldns_pkt *query, size_t maxq, ldns_rr_list *answers,
                ldns_rr_list *asked, int *unicast)
{
    const ldns_rr_list *qs = ldns_pkt_question(query);
    int rc = 0;
    for (size_t i = 0; rc == 0 && qs != NULL && i < ldns_rr_list_rr_count(qs) &&
                       ldns_rr_list_rr_count(asked) < maxq;
         i++) {
        ldns_rr *q = ldns_rr_list_rr(qs, i);
        if (asked_before(asked, q)) {
            continue;
        }
        ldns_rr_list *fresh = ldns_rr_list_new();
        if (fresh == NULL) {
            return CM_ENOMEM;
        }
        rc = zone_records(z, ldns_rr_owner(q), ldns_rr_get_type(q), CM__MDNS_TTL, fresh);
        if (rc == 0 && ldns_rr_list_rr_count(fresh) > 0) {
            rc = ldns_rr_list_push_rr(asked, q) ? 0 : CM_ENOMEM;
            *unicast |= (ldns_rr_get_class(q) & QU_BIT) != 0;
        }
        if (rc == 0) {
            rc = merge_fresh(answers, fresh);
        } else {
            ldns_rr_list_deep_free(fresh);
        }
    }
    return rc;
}

/* The reply of z to the first maxq questions of query it answers; *wire NULL: none. */
static int
answer_wire(const cm__mdns_zone *z, const ldns_pkt *query, size_t maxq, uint8_t **wire,
            size_t *len)
{
    *wire = NULL;
    *len = 0;
    ldns_rr_list *answers = ldns_rr_list_new();
    ldns_rr_list *asked = ldns_rr_list_new();
    int unicast = 0;
    int rc = answers == NULL || asked == NULL
                 ? CM_ENOMEM
                 : collect_answers(z, query, maxq, answers, asked, &unicast);
    if (rc != 0 || ldns_rr_list_rr_count(answers) == 0) {
        ldns_rr_list_deep_free(answers);
        ldns_rr_list_free(asked);
        return rc;
    }
    rc = response_wire(unicast ? ldns_pkt_id(query) : 0, asked, answers, wire, len);
    ldns_rr_list_free(asked); /* the questions are the query's */
    return rc;
}

int
cm__mdns_zone_answer_limit(const cm__mdns_zone *z, const ldns_pkt *query, size_t limit,
                           uint8_t **wire, size_t *len)
{
    int rc = answer_wire(z, query, SIZE_MAX, wire, len);
    if (rc == 0 && *wire != NULL && *len > limit) {
        /* At least one legitimate answer, whatever the query's size. */
        free(*wire);
        rc = answer_wire(z, query, 1, wire, len);
    }
    return rc;
}

int
cm__mdns_zone_answer(const cm__mdns_zone *z, const ldns_pkt *query, uint8_t **wire, size_t *len)
{
    return cm__mdns_zone_answer_limit(z, query, SIZE_MAX, wire, len);
}

int
cm__mdns_zone_announce(const cm__mdns_zone *z, uint32_t ttl, uint8_t **wire, size_t *len)
{
    *wire = NULL;
    *len = 0;
    ldns_rr_list *answers = ldns_rr_list_new();
    if (answers == NULL) {
        return CM_ENOMEM;
    }
    int rc = instance_records(z, LDNS_RR_TYPE_ANY, ttl, answers);
    if (rc != 0) {
        ldns_rr_list_deep_free(answers);
        return rc;
    }
    return response_wire(0, NULL, answers, wire, len);
}

int
cm__mdns_query_wire(const char *qname, uint16_t id, uint8_t **wire, size_t *len)
{
    *wire = NULL;
    *len = 0;
    ldns_rdf *name;
    int rc = make_dname(&name, "%s", qname);
    if (rc != 0) {
        return rc;
    }
    ldns_pkt *pkt = ldns_pkt_new();
    ldns_rr *q = new_rr(name, LDNS_RR_TYPE_PTR, 0);
    ldns_rdf_deep_free(name);
    if (pkt == NULL || q == NULL) {
        ldns_pkt_free(pkt);
        ldns_rr_free(q);
        return CM_ENOMEM;
    }
    ldns_rr_set_question(q, true);
    ldns_pkt_set_id(pkt, id);
    if (!ldns_pkt_push_rr(pkt, LDNS_SECTION_QUESTION, q)) {
        ldns_rr_free(q);
        rc = CM_ENOMEM;
    } else if (ldns_pkt2wire(wire, pkt, len) != LDNS_STATUS_OK) {
        *wire = NULL;
        rc = CM_ENOMEM;
    }
    ldns_pkt_free(pkt);
    return rc;
}

/* ---- parsing ---- */

/* ldns_wire2pkt of ldns 1.8.3 keeps only the last TSIG record of the additional section and
 * leaks the others (ldns_pkt_set_tsig does not free the one it replaces): a packet with two of
 * them would cost 73 bytes each time it arrives. mDNS never carries TSIG, so such a packet is
 * refused after a first walk over its records with ldns's own ldns_wire2rr. */
static int
tsig_records(const uint8_t *wire, size_t len)
{
    const size_t counts[4] = {LDNS_QDCOUNT(wire), LDNS_ANCOUNT(wire), LDNS_NSCOUNT(wire),
                              LDNS_ARCOUNT(wire)};
    const ldns_pkt_section sections[4] = {LDNS_SECTION_QUESTION, LDNS_SECTION_ANSWER,
                                          LDNS_SECTION_AUTHORITY, LDNS_SECTION_ADDITIONAL};
    size_t pos = LDNS_HEADER_SIZE;
    int n = 0;
    for (int s = 0; s < 4; s++) {
        for (size_t i = 0; i < counts[s]; i++) {
            ldns_rr *rr = NULL;
            if (ldns_wire2rr(&rr, wire, len, &pos, sections[s]) != LDNS_STATUS_OK) {
                return n; /* ldns_wire2pkt says what is wrong */
            }
            n += s == 3 && ldns_rr_get_type(rr) == LDNS_RR_TYPE_TSIG;
            ldns_rr_free(rr);
        }
    }
    return n;
}

ldns_status
cm__mdns_wire2pkt(ldns_pkt **pkt, const uint8_t *wire, size_t len)
{
    *pkt = NULL;
    if (len >= LDNS_HEADER_SIZE && LDNS_ARCOUNT(wire) > 1 && tsig_records(wire, len) > 1) {
        return LDNS_STATUS_ERR;
    }
    return ldns_wire2pkt(pkt, wire, len);
}
