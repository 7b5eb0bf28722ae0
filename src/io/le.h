/* le.h -- little-endian fields, the one set of readers and writers of the
 * byte formats in io/ (safetensors, npy, npz): get reads a value at p, put
 * writes v at p and returns p past it. Byte by byte, so p need not be aligned
 * and the host's byte order does not matter. */
#ifndef DDPM_IO_LE_H
#define DDPM_IO_LE_H

#include <stdint.h>
#include <string.h>

static inline uint16_t le_get16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }

static inline uint32_t le_get32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t le_get64(const unsigned char *p) { return (uint64_t)le_get32(p) | (uint64_t)le_get32(p + 4) << 32; }

/* IEEE binary32 and binary64 stored little-endian. */
static inline float le_getf32(const unsigned char *p) {
    uint32_t u = le_get32(p);
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline double le_getf64(const unsigned char *p) {
    uint64_t u = le_get64(p);
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

static inline unsigned char *le_put16(unsigned char *p, uint16_t v) {
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    return p + 2;
}

static inline unsigned char *le_put32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
    return p + 4;
}

static inline unsigned char *le_put64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
    return p + 8;
}

#endif
