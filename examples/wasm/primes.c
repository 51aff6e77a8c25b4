/*
 * A wasm node for nflow: how many primes are below n (the sieve of Eratosthenes).
 *
 * Reads the payload (a JSON object) on stdin, writes it back on stdout with "primes" added.
 * n comes from the payload's "n" (a number or a numeric string), 1000000 when absent. The
 * sieve takes n bytes of linear memory, so the node's memory cap bounds n as well.
 *
 * Built by build.sh: clang --target=wasm32-wasi, a WASI preview 1 command.
 */
#include "payload.h"

#define MAX_N 100000000L

int main(void) {
    size_t len = 0;
    char *in = read_all(stdin, &len);
    if (!in) {
        fputs("out of memory reading the payload\n", stderr);
        return 1;
    }
    long n = find_n(in, 1000000);
    if (n < 0 || n > MAX_N) {
        fprintf(stderr, "n must be between 0 and %ld, got %ld\n", MAX_N, n);
        return 2;
    }
    long count = 0;
    if (n > 2) {
        unsigned char *composite = calloc((size_t)n, 1);
        if (!composite) {
            fprintf(stderr, "out of memory for a sieve of %ld bytes\n", n);
            return 1;
        }
        for (long i = 2; i < n; i++) {
            if (composite[i]) continue;
            count++;
            if (i > (n - 1) / i) continue; /* i * i would pass n (long is 32 bits in wasm32) */
            for (long j = i * i; j < n; j += i) composite[j] = 1;
        }
    }
    char value[24];
    snprintf(value, sizeof value, "%ld", count);
    if (write_with(in, len, "primes", value) != 0) {
        fputs("the payload on stdin is not a JSON object\n", stderr);
        return 3;
    }
    return 0;
}
