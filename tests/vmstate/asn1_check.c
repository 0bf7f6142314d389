/* Independent check of the BER the vmstate visitors write: decodes files with the code asn1c
 * generated from engine/vmstate/ferry_vmstate.asn1 and checks the module's constraints.
 *
 *   ferry_vmstate_asn1_check [-t Section|Struct] [-x] FILE...
 *
 * Exit 0 when every file decodes completely as the type (default Section) and satisfies its
 * constraints; prints "OK <file>" or "FAIL <file>: <reason>" per file. -x prints XER. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "Section.h"
#include "Struct.h"

static int check_file(asn_TYPE_descriptor_t* type, const char* path, int print_xer) {
  FILE* f = fopen(path, "rb");
  if (!f) {
    printf("FAIL %s: cannot open\n", path);
    return 1;
  }
  size_t cap = 1 << 16, len = 0;
  unsigned char* buf = malloc(cap);
  size_t n;
  while (buf && (n = fread(buf + len, 1, cap - len, f)) > 0) {
    len += n;
    if (len == cap) {
      unsigned char* bigger = realloc(buf, cap * 2);
      if (!bigger) {
        free(buf);
        buf = NULL;
        break;
      }
      buf = bigger;
      cap *= 2;
    }
  }
  fclose(f);
  if (!buf) {
    printf("FAIL %s: out of memory\n", path);
    return 1;
  }
  void* value = NULL;
  asn_dec_rval_t rv = ber_decode(NULL, type, &value, buf, len);
  int bad = 0;
  if (rv.code != RC_OK) {
    printf("FAIL %s: BER decoding stopped at byte %zu of %zu (%s)\n", path, rv.consumed, len,
           rv.code == RC_WMORE ? "needs more data" : "malformed");
    bad = 1;
  } else if (rv.consumed != len) {
    printf("FAIL %s: %zu trailing bytes after the value\n", path, len - rv.consumed);
    bad = 1;
  } else {
    char err[256];
    size_t errlen = sizeof err;
    if (asn_check_constraints(type, value, err, &errlen) != 0) {
      printf("FAIL %s: constraint: %s\n", path, err);
      bad = 1;
    }
  }
  if (!bad) {
    printf("OK %s (%zu bytes)\n", path, len);
    if (print_xer) xer_fprint(stdout, type, value);
  }
  ASN_STRUCT_FREE(*type, value);
  free(buf);
  return bad;
}

int main(int argc, char** argv) {
  asn_TYPE_descriptor_t* type = &asn_DEF_Section;
  int print_xer = 0, failures = 0, files = 0;
  for (int i = 1; i < argc; ++i) {
    if (strcmp(argv[i], "-t") == 0 && i + 1 < argc) {
      ++i;
      if (strcmp(argv[i], "Struct") == 0) {
        type = &asn_DEF_Struct;
      } else if (strcmp(argv[i], "Section") == 0) {
        type = &asn_DEF_Section;
      } else {
        fprintf(stderr, "unknown type %s\n", argv[i]);
        return 2;
      }
    } else if (strcmp(argv[i], "-x") == 0) {
      print_xer = 1;
    } else {
      ++files;
      failures += check_file(type, argv[i], print_xer);
    }
  }
  if (!files) {
    fprintf(stderr, "usage: %s [-t Section|Struct] [-x] FILE...\n", argv[0]);
    return 2;
  }
  return failures ? 1 : 0;
}
