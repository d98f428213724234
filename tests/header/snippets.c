/* Code the attributes in include/osmem/osmem.h must let the compiler judge;
 * attribute_warnings.sh compiles one case at a time (-DCASE=...). */
#include <stdlib.h>
#include <string.h>

#include "osmem/osmem.h"

#if CASE == 1 /* strcpy of 25 bytes (24 characters and the NUL) into 24 */
char* copy(void) {
  char* p = os_malloc(24);
  if (p != NULL) strcpy(p, "abcdefghijklmnopqrstuvwx");
  return p;
}
#elif CASE == 2 /* 24 bytes into 24: fits */
char* copy(void) {
  char* p = os_malloc(24);
  if (p != NULL) strcpy(p, "abcdefghijklmnopqrstuvw");
  return p;
}
#elif CASE == 3 /* the same overflow through os_calloc's two factors */
char* copy(void) {
  char* p = os_calloc(3, 8);
  if (p != NULL) strcpy(p, "abcdefghijklmnopqrstuvwx");
  return p;
}
#elif CASE == 4 /* a dropped result leaks */
void leak(void) {
  os_malloc(24);
}
#elif CASE == 5 /* an osmem block handed to the C library's free */
void mismatch(void) {
  void* p = os_malloc(24);
  free(p);
}
#endif
