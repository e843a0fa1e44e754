/* cmicro: what the mDNS registry backend reads from replies: service entries assembled from
 * ldns-parsed messages (go-micro's util/mdns client.go messageToEntry, without its last-record
 * quirk), which source holds which instance, and go-micro's TXT payload, hex(zlib(JSON)). No
 * sockets here. */
#include "mdns_int.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- entries ---- */

/* The presentation form of a domain name rdf, malloc'd; NULL when rdf is not a name. */
static char *
dname_str(const ldns_rdf *rdf)
{
    if (rdf == NULL || ldns_rdf_get_type(rdf) != LDNS_RDF_TYPE_DNAME) {
        return NULL;
    }
    return ldns_rdf2str(rdf);
}

static cm__mdns_entry *
find_entry(cm__mdns_entries *set, const char *name)
{
    for (size_t i = 0; i < set->n; i++) {
        if (strcasecmp(set->v[i].name, name) == 0) {
            return &set->v[i];
        }
    }
    return NULL;
}

/* The entry called name, created when new; takes name in both cases. NULL when out of memory
 * or when the set is full. */
static cm__mdns_entry *
ensure_entry(cm__mdns_entries *set, char *name)
{
    cm__mdns_entry *e = find_entry(set, name);
    if (e != NULL) {
        free(name);
        return e;
    }
    if (set->n == CM__MDNS_MAX_ENTRIES) {
        free(name);
        return NULL;
    }
    if (set->n == set->cap) {
        size_t cap = set->cap ? set->cap * 2 : 8;
        cm__mdns_entry *v = realloc(set->v, cap * sizeof *v);
        if (v == NULL) {
            free(name);
            return NULL;
        }
        set->v = v;
        set->cap = cap;
    }
    e = &set->v[set->n++];
    memset(e, 0, sizeof *e);
    e->name = name;
    return e;
}

/* A/AAAA records of one message. */
typedef struct addr_rec {
    char *owner;
    int v6;
    uint8_t ip[16];
} addr_rec;

static int
remember_host(cm__mdns_entries *set, const addr_rec *a)
{
    cm__mdns_hostaddr *h = NULL;
    for (size_t i = 0; i < set->nhosts; i++) {
        if (strcasecmp(set->hosts[i].host, a->owner) == 0) {
            h = &set->hosts[i];
            break;
        }
    }
    if (h == NULL) {
        if (set->nhosts == CM__MDNS_MAX_ENTRIES) {
            return 0;
        }
        if (set->nhosts == set->hostcap) {
            size_t cap = set->hostcap ? set->hostcap * 2 : 4;
            cm__mdns_hostaddr *v = realloc(set->hosts, cap * sizeof *v);
            if (v == NULL) {
                return CM_ENOMEM;
            }
            set->hosts = v;
            set->hostcap = cap;
        }
        char *copy = strdup(a->owner);
        if (copy == NULL) {
            return CM_ENOMEM;
        }
        h = &set->hosts[set->nhosts++];
        memset(h, 0, sizeof *h);
        h->host = copy;
    }
    if (a->v6) {
        h->has_v6 = 1;
        memcpy(h->v6, a->ip, 16);
    } else {
        h->has_v4 = 1;
        memcpy(h->v4, a->ip, 4);
    }
    return 0;
}

static void
set_address(cm__mdns_entry *e, const addr_rec *a)
{
    if (a->v6) {
        e->has_v6 = 1;
        memcpy(e->v6, a->ip, 16);
    } else {
        e->has_v4 = 1;
        memcpy(e->v4, a->ip, 4);
    }
}

static int
rdf_u16(const ldns_rdf *rdf, uint16_t *out)
{
    if (rdf == NULL || ldns_rdf_size(rdf) != 2) {
        return -1;
    }
    *out = ldns_rdf2native_int16(rdf);
    return 0;
}

static int
collect_txt(const ldns_rr *rr, cm__mdns_entry *e)
{
    size_t total = 0;
    for (size_t i = 0; i < ldns_rr_rd_count(rr); i++) {
        const ldns_rdf *s = ldns_rr_rdf(rr, i);
        if (s == NULL || ldns_rdf_size(s) < 1 || ldns_rdf_data(s)[0] + 1u > ldns_rdf_size(s)) {
            return 0;
        }
        total += ldns_rdf_data(s)[0];
    }
    char *txt = malloc(total + 1);
    if (txt == NULL) {
        return CM_ENOMEM;
    }
    size_t off = 0;
    for (size_t i = 0; i < ldns_rr_rd_count(rr); i++) {
        const uint8_t *d = ldns_rdf_data(ldns_rr_rdf(rr, i));
        memcpy(txt + off, d + 1, d[0]);
        off += d[0];
    }
    txt[off] = '\0';
    free(e->txt);
    e->txt = txt;
    e->txtlen = off;
    return 0;
}

/* Applies one PTR, SRV or TXT record; A/AAAA records are gathered into addrs. */
static int
collect_rr(cm__mdns_entries *set, const ldns_rr *rr, addr_rec *addrs, size_t *naddrs)
{
    ldns_rr_type type = ldns_rr_get_type(rr);
    uint32_t ttl = ldns_rr_ttl(rr);
    cm__mdns_entry *e;
    char *name;
    switch (type) {
    case LDNS_RR_TYPE_PTR:
        if (ldns_rr_rd_count(rr) != 1 || (name = dname_str(ldns_rr_rdf(rr, 0))) == NULL) {
            return 0;
        }
        if ((e = ensure_entry(set, name)) != NULL) {
            e->ttl = ttl;
        }
        return 0;
    case LDNS_RR_TYPE_SRV: {
        uint16_t port;
        char *host;
        if (ldns_rr_rd_count(rr) != 4 || rdf_u16(ldns_rr_rdf(rr, 2), &port) != 0) {
            return 0;
        }
        if ((name = dname_str(ldns_rr_owner(rr))) == NULL) {
            return 0;
        }
        if ((host = dname_str(ldns_rr_rdf(rr, 3))) == NULL) {
            free(name);
            return 0;
        }
        if ((e = ensure_entry(set, name)) == NULL) {
            free(host);
            return 0;
        }
        free(e->host);
        e->host = host;
        e->port = port;
        e->ttl = ttl;
        return 0;
    }
    case LDNS_RR_TYPE_TXT:
        if ((name = dname_str(ldns_rr_owner(rr))) == NULL) {
            return 0;
        }
        if ((e = ensure_entry(set, name)) == NULL) {
            return 0;
        }
        e->ttl = ttl;
        return collect_txt(rr, e);
    case LDNS_RR_TYPE_A:
    case LDNS_RR_TYPE_AAAA: {
        size_t want = type == LDNS_RR_TYPE_A ? 4 : 16;
        const ldns_rdf *ip = ldns_rr_rd_count(rr) == 1 ? ldns_rr_rdf(rr, 0) : NULL;
        if (ip == NULL || ldns_rdf_size(ip) != want || *naddrs == CM__MDNS_MAX_ENTRIES) {
            return 0;
        }
        if ((name = dname_str(ldns_rr_owner(rr))) == NULL) {
            return 0;
        }
        addr_rec *a = &addrs[(*naddrs)++];
        a->owner = name;
        a->v6 = type == LDNS_RR_TYPE_AAAA;
        memset(a->ip, 0, sizeof a->ip);
        memcpy(a->ip, ldns_rdf_data(ip), want);
        return 0;
    }
    default:
        return 0;
    }
}

/* Gives the entry of each SRV of the message the first A and AAAA of its target (or of its own
 * name) from the same message, then entries named by an A/AAAA owner that address. */
static void
link_addresses(cm__mdns_entries *set, const ldns_rr_list *const lists[2], const addr_rec *addrs,
               size_t naddrs)
{
    for (size_t l = 0; naddrs > 0 && l < 2; l++) {
        for (size_t i = 0; lists[l] != NULL && i < ldns_rr_list_rr_count(lists[l]); i++) {
            const ldns_rr *rr = ldns_rr_list_rr(lists[l], i);
            if (ldns_rr_get_type(rr) != LDNS_RR_TYPE_SRV || ldns_rr_rd_count(rr) != 4) {
                continue;
            }
            char *owner = dname_str(ldns_rr_owner(rr));
            char *target = dname_str(ldns_rr_rdf(rr, 3));
            cm__mdns_entry *e = owner != NULL && target != NULL ? find_entry(set, owner) : NULL;
            int got4 = 0, got6 = 0;
            for (size_t j = 0; e != NULL && j < naddrs; j++) {
                const addr_rec *a = &addrs[j];
                int *got = a->v6 ? &got6 : &got4;
                if (!*got &&
                    (strcasecmp(a->owner, target) == 0 || strcasecmp(a->owner, owner) == 0)) {
                    set_address(e, a);
                    *got = 1;
                }
            }
            free(owner);
            free(target);
        }
    }
    for (size_t j = 0; j < naddrs; j++) {
        cm__mdns_entry *e = find_entry(set, addrs[j].owner);
        if (e != NULL) {
            set_address(e, &addrs[j]);
        }
    }
}

int
cm__mdns_collect(const ldns_pkt *pkt, cm__mdns_entries *set)
{
    const ldns_rr_list *const lists[2] = {ldns_pkt_answer(pkt), ldns_pkt_additional(pkt)};
    size_t total = 0;
    for (size_t l = 0; l < 2; l++) {
        total += lists[l] != NULL ? ldns_rr_list_rr_count(lists[l]) : 0;
    }
    addr_rec *addrs = calloc(total ? total : 1, sizeof *addrs);
    if (addrs == NULL) {
        return CM_ENOMEM;
    }
    size_t naddrs = 0;
    int rc = 0;
    for (size_t l = 0; rc == 0 && l < 2; l++) {
        for (size_t i = 0; rc == 0 && lists[l] != NULL && i < ldns_rr_list_rr_count(lists[l]);
             i++) {
            rc = collect_rr(set, ldns_rr_list_rr(lists[l], i), addrs, &naddrs);
        }
    }
    if (rc == 0) {
        link_addresses(set, lists, addrs, naddrs);
    }
    for (size_t j = 0; j < naddrs; j++) {
        if (rc == 0) {
            rc = remember_host(set, &addrs[j]);
        }
        free(addrs[j].owner);
    }
    free(addrs);
    return rc;
}

void
cm__mdns_entries_resolve(cm__mdns_entries *set)
{
    for (size_t i = 0; i < set->n; i++) {
        cm__mdns_entry *e = &set->v[i];
        if (e->has_v4 || e->has_v6 || e->host == NULL) {
            continue;
        }
        for (size_t j = 0; j < set->nhosts; j++) {
            const cm__mdns_hostaddr *h = &set->hosts[j];
            if (strcasecmp(h->host, e->host) == 0) {
                e->has_v4 = h->has_v4;
                e->has_v6 = h->has_v6;
                memcpy(e->v4, h->v4, 4);
                memcpy(e->v6, h->v6, 16);
                break;
            }
        }
    }
}

void
cm__mdns_entries_fini(cm__mdns_entries *set)
{
    for (size_t i = 0; i < set->n; i++) {
        free(set->v[i].name);
        free(set->v[i].host);
        free(set->v[i].txt);
    }
    for (size_t i = 0; i < set->nhosts; i++) {
        free(set->hosts[i].host);
    }
    free(set->v);
    free(set->hosts);
    memset(set, 0, sizeof *set);
}

int
cm__mdns_entry_complete(const cm__mdns_entry *e)
{
    return (e->has_v4 || e->has_v6) && e->port != 0 && e->txt != NULL;
}

void
cm__mdns_entry_address(const cm__mdns_entry *e, char *out, size_t outlen)
{
    char ip[INET6_ADDRSTRLEN];
    if (e->has_v4) {
        inet_ntop(AF_INET, e->v4, ip, sizeof ip);
        snprintf(out, outlen, "%s:%u", ip, (unsigned)e->port);
    } else {
        inet_ntop(AF_INET6, e->v6, ip, sizeof ip);
        snprintf(out, outlen, "[%s]:%u", ip, (unsigned)e->port);
    }
}

char *
cm__mdns_strip_suffix(const char *name, const char *suffix)
{
    size_t n = strlen(name), s = strlen(suffix);
    if (n <= s || strcasecmp(name + n - s, suffix) != 0) {
        return NULL;
    }
    return strndup(name, n - s);
}

/* ---- who speaks for an instance ---- */

/* The instance a record describes: the owner of SRV, TXT, A and AAAA records, the target of a
 * PTR record when it is a name under the PTR's owner ("<id>.greeter.micro." under
 * "greeter.micro."; not the service names that DNS-SD enumeration points to). NULL: none. */
static const ldns_rdf *
instance_of(const ldns_rr *rr, int *claims)
{
    *claims = 1;
    switch (ldns_rr_get_type(rr)) {
    case LDNS_RR_TYPE_SRV:
    case LDNS_RR_TYPE_TXT:
        return ldns_rr_owner(rr);
    case LDNS_RR_TYPE_A:
    case LDNS_RR_TYPE_AAAA:
        *claims = 0; /* host names are checked, never held: hosts may share one */
        return ldns_rr_owner(rr);
    case LDNS_RR_TYPE_PTR: {
        const ldns_rdf *t = ldns_rr_rd_count(rr) == 1 ? ldns_rr_rdf(rr, 0) : NULL;
        if (t != NULL && ldns_rdf_get_type(t) == LDNS_RDF_TYPE_DNAME &&
            ldns_dname_is_subdomain(t, ldns_rr_owner(rr))) {
            return t;
        }
        return NULL;
    }
    default:
        return NULL;
    }
}

static cm__mdns_owner *
find_owner(cm__mdns_owners *o, const ldns_rdf *name)
{
    for (size_t i = 0; i < o->n; i++) {
        if (ldns_dname_compare(o->v[i].name, name) == 0) {
            return &o->v[i];
        }
    }
    return NULL;
}

/* A slot for a new name: the next free one or one whose TTL ended (its name freed); NULL when
 * every name is held. A new slot counts in o->n once it holds a name. */
static cm__mdns_owner *
free_owner(cm__mdns_owners *o, uint64_t now)
{
    if (o->n < CM__MDNS_MAX_OWNERS) {
        return &o->v[o->n];
    }
    for (size_t i = 0; i < o->n; i++) {
        if (o->v[i].until <= now) {
            ldns_rdf_deep_free(o->v[i].name);
            memmove(&o->v[i], &o->v[i + 1], (o->n - i - 1) * sizeof o->v[0]);
            o->n--;
            return &o->v[o->n];
        }
    }
    return NULL;
}

/* Holds name for the source until ttl (seconds, capped) ends. 0 or CM_ENOMEM. */
static int
hold(cm__mdns_owners *o, const ldns_rdf *name, const cm__mdns_owner *by, uint32_t ttl,
     uint64_t now)
{
    if (ttl > CM__MDNS_MAX_OWNER_TTL) {
        ttl = CM__MDNS_MAX_OWNER_TTL;
    }
    cm__mdns_owner *w = find_owner(o, name);
    if (w == NULL) {
        if ((w = free_owner(o, now)) == NULL) {
            return 0; /* full of live names: the new one is used but not held */
        }
        if ((w->name = ldns_rdf_clone(name)) == NULL) {
            return CM_ENOMEM;
        }
        o->n++;
    }
    w->family = by->family;
    memcpy(w->ip, by->ip, 16);
    w->hash = by->hash;
    w->len = by->len;
    w->until = now + (uint64_t)ttl * 1000;
    return 0;
}

/* Whether a live name of the message is held by another source that said something else (the
 * same datagram from another address of its host, over the other family, replaces nothing). */
static int
held_by_other(cm__mdns_owners *o, const ldns_pkt *pkt, const cm__mdns_owner *by, uint64_t now,
              int *same)
{
    const ldns_rr_list *const lists[2] = {ldns_pkt_answer(pkt), ldns_pkt_additional(pkt)};
    *same = 0;
    for (size_t l = 0; l < 2; l++) {
        for (size_t i = 0; lists[l] != NULL && i < ldns_rr_list_rr_count(lists[l]); i++) {
            int claims;
            const ldns_rdf *name = instance_of(ldns_rr_list_rr(lists[l], i), &claims);
            const cm__mdns_owner *w = name != NULL ? find_owner(o, name) : NULL;
            if (w == NULL || w->until <= now ||
                (w->family == by->family && memcmp(w->ip, by->ip, 16) == 0)) {
                continue;
            }
            if (w->hash != by->hash || w->len != by->len) {
                return 1;
            }
            *same = 1;
        }
    }
    return 0;
}

int
cm__mdns_owners_admit(cm__mdns_owners *o, const ldns_pkt *pkt, const uint8_t *data, size_t len,
                      const struct sockaddr *from, uint64_t now)
{
    cm__mdns_owner by = {.hash = cm__fnv1a(data, len), .len = len};
    by.family = cm__mdns_sockaddr_ip(from, by.ip);
    int same;
    if (by.family == AF_UNSPEC || held_by_other(o, pkt, &by, now, &same)) {
        return 0;
    }
    const ldns_rr_list *const lists[2] = {ldns_pkt_answer(pkt), ldns_pkt_additional(pkt)};
    for (size_t l = 0; !same && l < 2; l++) {
        for (size_t i = 0; lists[l] != NULL && i < ldns_rr_list_rr_count(lists[l]); i++) {
            const ldns_rr *rr = ldns_rr_list_rr(lists[l], i);
            int claims;
            const ldns_rdf *name = instance_of(rr, &claims);
            if (name != NULL && claims && hold(o, name, &by, ldns_rr_ttl(rr), now) != 0) {
                return 0;
            }
        }
    }
    return 1;
}

void
cm__mdns_owners_fini(cm__mdns_owners *o)
{
    for (size_t i = 0; i < o->n; i++) {
        ldns_rdf_deep_free(o->v[i].name);
    }
    o->n = 0;
}

/* ---- TXT payload ---- */

int
cm__mdns_txt_encode(const cm_reg_service *svc, const cm_node *node, char **hex, size_t *len)
{
    *hex = NULL;
    *len = 0;
    int rc = CM_ENOMEM;
    char *json = NULL;
    cm_buf out = {0};
    cJSON *o = cJSON_CreateObject();
    cJSON *md = cm__md_to_json(node->metadata);
    if (o == NULL || md == NULL) {
        cJSON_Delete(md);
        goto done;
    }
    cJSON_AddItemToObject(o, "Metadata", md);
    if (cJSON_AddStringToObject(o, "Service", svc->name) == NULL ||
        cJSON_AddStringToObject(o, "Version", svc->version ? svc->version : "") == NULL) {
        goto done;
    }
    /* go-micro writes a nil slice (null) for a server without handlers. */
    cJSON *eps = svc->nendpoints ? cJSON_AddArrayToObject(o, "Endpoints")
                                 : cJSON_AddNullToObject(o, "Endpoints");
    if (eps == NULL) {
        goto done;
    }
    for (size_t i = 0; i < svc->nendpoints; i++) {
        cJSON *e = cm__endpoint_to_json(&svc->endpoints[i]);
        if (e == NULL) {
            goto done;
        }
        cJSON_AddItemToArray(eps, e);
    }
    json = cJSON_PrintUnformatted(o);
    if (json == NULL) {
        goto done;
    }
    rc = cm__hexzlib_encode(json, strlen(json), &out);
    if (rc == 0) {
        rc = cm_buf_append(&out, "", 1);
    }
    if (rc == 0) {
        *hex = (char *)out.data;
        *len = out.len - 1;
        out.data = NULL;
    }
done:
    cJSON_Delete(o);
    cJSON_free(json);
    cm_buf_free(&out);
    return rc;
}

static int
endpoints_from_json(const cJSON *eps, cm_reg_service *s)
{
    if (eps == NULL || cJSON_IsNull(eps)) {
        return 0;
    }
    if (!cJSON_IsArray(eps)) {
        return CM_EPROTO;
    }
    const cJSON *item;
    cJSON_ArrayForEach(item, eps)
    {
        if (cJSON_IsNull(item)) {
            continue;
        }
        cm_endpoint ep;
        memset(&ep, 0, sizeof ep);
        int rc = cm__endpoint_from_json(item, &ep);
        if (rc != 0) {
            return rc;
        }
        cm_endpoint *added = cm_reg_service_add_endpoint(s, ep.name ? ep.name : "", ep.request,
                                                     ep.response, ep.metadata);
        cm__endpoint_fini(&ep);
        if (added == NULL) {
            return CM_ENOMEM;
        }
    }
    return 0;
}

int
cm__mdns_txt_decode(const char *hex, size_t len, cm_reg_service **svc, cm_md **md)
{
    *svc = NULL;
    *md = NULL;
    cm_buf json = {0};
    int rc = cm__hexzlib_decode(hex, len, 0, &json);
    if (rc != 0) {
        cm_buf_free(&json);
        return rc;
    }
    cJSON *o = cJSON_ParseWithLength((const char *)json.data, json.len);
    cm_buf_free(&json);
    /* Go's encoding/json matches keys case-insensitively, as cJSON_GetObjectItem does. */
    const cJSON *name = cJSON_GetObjectItem(o, "Service");
    const cJSON *version = cJSON_GetObjectItem(o, "Version");
    const cJSON *meta = cJSON_GetObjectItem(o, "Metadata");
    if (!cJSON_IsObject(o) || !cJSON_IsString(name) ||
        (version != NULL && !cJSON_IsString(version) && !cJSON_IsNull(version))) {
        cJSON_Delete(o);
        return CM_EPROTO;
    }
    cm_reg_service *s =
        cm_reg_service_new(name->valuestring, cJSON_IsString(version) ? version->valuestring : "");
    rc = s == NULL ? CM_ENOMEM : endpoints_from_json(cJSON_GetObjectItem(o, "Endpoints"), s);
    cm_md *m = NULL;
    if (rc == 0) {
        rc = meta != NULL ? cm__md_from_json(meta, &m) : ((m = cm_md_new()) ? 0 : CM_ENOMEM);
    }
    cJSON_Delete(o);
    if (rc != 0) {
        cm_reg_service_free(s);
        return rc;
    }
    *svc = s;
    *md = m;
    return 0;
}
