// The device of the hand-built test streams: its vmdesc, shared by the stream tests, the fuzz
// seeds (tests/fuzz/make_seeds.cc) and the stream fuzzer's --vmdesc pass, so all three decode
// the same device sections.
#pragma once

namespace ferry::stream::test {

inline constexpr const char* kHandmadeDeviceVmdesc = R"({"page_size": 4096, "devices": [
  {"name": "dev", "instance_id": 0, "vmsd_name": "dev", "version": 1, "fields": [
    {"name": "a", "type": "uint16", "size": 2},
    {"name": "b", "type": "int32", "size": 4},
    {"name": "flag", "type": "bool", "size": 1},
    {"name": "buf", "type": "buffer", "size": 3},
    {"name": "arr", "array_len": 2, "type": "uint8", "size": 1},
    {"name": "s", "type": "struct", "struct": {"vmsd_name": "s", "version": 1,
      "fields": [{"name": "x", "type": "uint32", "size": 4}]}, "size": 4}],
   "subsections": [{"vmsd_name": "dev/sub", "version": 1,
      "fields": [{"name": "y", "type": "uint8 equal", "size": 1}]}]}]})";

}  // namespace ferry::stream::test
