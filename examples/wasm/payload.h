/*
 * What loop.c and primes.c share: the payload read from stdin as text, its top-level "n",
 * and the payload written back with one key added. The least a step needs, not a JSON parser.
 */
#ifndef PAYLOAD_H
#define PAYLOAD_H

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *read_all(FILE *in, size_t *len) {
    size_t cap = 4096, used = 0;
    char *buf = malloc(cap + 1);
    size_t got;
    if (!buf) return NULL;
    while ((got = fread(buf + used, 1, cap - used, in)) > 0) {
        used += got;
        if (used == cap) {
            char *bigger = realloc(buf, cap * 2 + 1);
            if (!bigger) { free(buf); return NULL; }
            buf = bigger;
            cap *= 2;
        }
    }
    buf[used] = '\0';
    *len = used;
    return buf;
}

/* The value of the top-level key "n" (a number or a numeric string), or fallback. */
static long find_n(const char *json, long fallback) {
    const char *p = json;
    int depth = 0, in_string = 0;
    for (; *p; p++) {
        if (in_string) {
            if (*p == '\\' && p[1]) p++;
            else if (*p == '"') in_string = 0;
            continue;
        }
        if (*p == '{' || *p == '[') depth++;
        else if (*p == '}' || *p == ']') depth--;
        else if (*p == '"') {
            if (depth == 1 && strncmp(p, "\"n\"", 3) == 0) {
                const char *q = p + 3;
                while (isspace((unsigned char)*q)) q++;
                if (*q == ':') {
                    q++;
                    while (isspace((unsigned char)*q)) q++;
                    if (*q == '"') q++;
                    char *end;
                    long n = strtol(q, &end, 10);
                    return end == q ? fallback : n;
                }
            }
            in_string = 1;
        }
    }
    return fallback;
}

/* Writes the payload `in` back with "key": value added (value: JSON text). 0, or -1 when `in`
 * is not a JSON object. */
static int write_with(char *in, size_t len, const char *key, const char *value) {
    while (len > 0 && isspace((unsigned char)in[len - 1])) len--;
    if (len < 2 || in[0] != '{' || in[len - 1] != '}') return -1;
    len--;
    int empty = 1;
    for (size_t i = 1; i < len; i++)
        if (!isspace((unsigned char)in[i])) empty = 0;
    fwrite(in, 1, empty ? 1 : len, stdout);
    printf("%s\"%s\":%s}", empty ? "" : ",", key, value);
    return 0;
}

#endif
