/*
 * A wasm node for nflow: the /bench flow's loop, n times.
 *
 * Reads the payload (a JSON object) on stdin, writes it back on stdout with "result" added:
 *
 *     s = sum over i < n of sqrt(i) * sin(i) + pow(i, 2) % 7
 *
 * n comes from the payload's "n" (a number, or a string as query parameters are), 1000 when
 * absent; n = 1000 gives the /bench flow's {"result":1972.2638254353353}.
 *
 * Built by build.sh: clang --target=wasm32-wasi, a WASI preview 1 command.
 */
#include <math.h>

#include "payload.h"

#define MAX_N 100000000L

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
    char value[32];
    snprintf(value, sizeof value, "%.17g", s);
    if (write_with(in, len, "result", value) != 0) {
        fputs("the payload on stdin is not a JSON object\n", stderr);
        return 3;
    }
    return 0;
}
