/* FERRY_API marks what libferry.so exports. Everything else in the library is built with hidden
 * visibility (and a linker version script keeps it that way), so a hypervisor linking ferry sees
 * only the public API of include/ferry/ and none of ferry's internals or the libraries it uses.
 * Consumers of the static library define nothing: the macro then only marks declarations. */
#ifndef FERRY_EXPORT_H
#define FERRY_EXPORT_H

#if defined(FERRY_BUILDING_LIBRARY) && (defined(__GNUC__) || defined(__clang__))
#define FERRY_API __attribute__((visibility("default")))
#else
#define FERRY_API
#endif

#endif /* FERRY_EXPORT_H */
