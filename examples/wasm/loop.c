/*
 * A wasm node for nflow: the /bench flow's loop, n times.
 *
 * Reads the payload (a JSON object) on stdin, writes it back on stdout with "result" added:
 *
 *     s = sum over i < n of sqrt(i) * sin(i) + pow(i, 2) % 7
 *
 * n comes from the payload's "n" (a number, or a string as query parameters are), 1000 when
 * absent; n = 1000 gives the /bench flow's {"result":1972.2638254353353}. The JSON handling is
 * the least this needs (find "n", append one key), not a parser.
 *
 * Built by build.sh: clang --target=wasm32-wasi, a WASI preview 1 command.
 */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_N 100000000L

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

int main(void) {
    size_t len = 0;
    char *in = read_all(stdin, &len);
    if (!in) {
        fputs("out of memory reading the payload\n", stderr);
        return 1;
    }
    long n = find_n(in, 1000);
    if (n < 0 || n > MAX_N) {
        fprintf(stderr, "n must be between 0 and %ld, got %ld\n", MAX_N, n);
        return 2;
    }
    double s = 0;
    for (long i = 0; i < n; i++) {
        double x = (double)i;
        s += sqrt(x) * sin(x) + fmod(pow(x, 2), 7);
    }
    /* The payload back with "result" added: everything before its closing brace, then ours. */
    while (len > 0 && isspace((unsigned char)in[len - 1])) len--;
    if (len < 2 || in[0] != '{' || in[len - 1] != '}') {
        fputs("the payload on stdin is not a JSON object\n", stderr);
        return 3;
    }
    len--;
    int empty = 1;
    for (size_t i = 1; i < len; i++)
        if (!isspace((unsigned char)in[i])) empty = 0;
    fwrite(in, 1, empty ? 1 : len, stdout);
    printf("%s\"result\":%.17g}", empty ? "" : ",", s);
    return 0;
}
