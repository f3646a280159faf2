/* Loads the shared library at run time, as Python ctypes, Node or Java FFM do, and checks that
 * every function the header declares resolves (the Makefile lists them from include/omendb.h in
 * omen_exports.inc) and that the versions agree with the header.
 * Usage: test_dlopen path/to/libomendb.so */
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include "omendb.h"

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s libomendb.so\n", argv[0]);
        return 2;
    }
    void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        fprintf(stderr, "dlopen: %s\n", dlerror());
        return 1;
    }
    int ok = 1;
    /* POSIX guarantees dlsym's object pointer converts to a function pointer; ISO C does not,
     * so copy the bits rather than cast (keeps -Wpedantic quiet). */
    uint32_t (*abi)(void);
    const char *(*version)(void);
    const char *(*name)(uint32_t);
    void *symbol = dlsym(lib, "omen_abi_version");
    memcpy(&abi, &symbol, sizeof abi);
    symbol = dlsym(lib, "omen_version");
    memcpy(&version, &symbol, sizeof version);
    symbol = dlsym(lib, "omen_status_name");
    memcpy(&name, &symbol, sizeof name);
    const char *symbols[] = {
#include "omen_exports.inc"
    };
    size_t declared = sizeof symbols / sizeof *symbols;
    for (size_t i = 0; i < declared; i++) {
        if (!dlsym(lib, symbols[i])) {
            fprintf(stderr, "missing symbol %s\n", symbols[i]);
            ok = 0;
        }
    }
    /* The list comes from the header: an empty one would check nothing. */
    if (declared < 20) {
        fprintf(stderr, "only %zu functions listed from the header\n", declared);
        ok = 0;
    }
    printf("dlopen: %zu declared functions resolved\n", declared);
    if (!abi || !version || !name) {
        fprintf(stderr, "missing version symbols\n");
        ok = 0;
    } else {
        ok &= abi() == OMEN_ABI_VERSION;
        ok &= strcmp(name(OMEN_STATUS_DUPLICATE_ID), "OMEN_STATUS_DUPLICATE_ID") == 0;
        ok &= strcmp(name(123456), "OMEN_STATUS_UNKNOWN") == 0;
        printf("dlopen: omendb %s abi %u\n", version(), abi());
    }
    dlclose(lib);
    printf("test_dlopen: %s\n", ok ? "all checks passed" : "FAILED");
    return ok ? 0 : 1;
}
