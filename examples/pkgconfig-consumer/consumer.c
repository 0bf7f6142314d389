/* The smallest program built against an installed libferry with pkg-config:
 *   cc consumer.c $(pkg-config --cflags --libs ferry) -o consumer
 * It prints the library's version and fails when the loaded library is not the one whose
 * headers it was compiled with. */
#include <ferry/ferry.h>
#include <stdio.h>
#include <string.h>

int main(void) {
  const char* loaded = ferry_version();
  printf("ferry %s (headers %s)\n", loaded, FERRY_VERSION_STRING);
  if (strcmp(loaded, FERRY_VERSION_STRING) != 0) {
    fprintf(stderr, "consumer: loaded libferry %s, compiled against %s\n", loaded,
            FERRY_VERSION_STRING);
    return 1;
  }
  ferry_options options;
  ferry_options_init(&options);
  ferry_source* source = NULL;
  if (ferry_source_new(&options, &source) != FERRY_OK) {
    fprintf(stderr, "consumer: ferry_source_new: %s\n", ferry_last_error());
    return 1;
  }
  ferry_source_free(source);
  return 0;
}
