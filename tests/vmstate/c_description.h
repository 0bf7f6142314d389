/* A device described from C (c_description.c), used by c_description_test.cc. */
#ifndef FERRY_TESTS_VMSTATE_C_DESCRIPTION_H
#define FERRY_TESTS_VMSTATE_C_DESCRIPTION_H

#include "ferry/vmstate.h"

#ifdef __cplusplus
extern "C" {
#endif

const FerryVmsDescription* c_device_description(void);
void* c_device_new(void); /* zeroed */
void c_device_fill(void* dev);
int c_device_equal(const void* a, const void* b);
void c_device_free(void* dev); /* ferry_vms_release + free */
int c_device_post_load_calls(const void* dev);

#ifdef __cplusplus
}
#endif

#endif
