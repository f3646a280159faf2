// Second translation unit: the header must not define anything that clashes at link time.
#include "omendb.h"

size_t second_translation_unit_dim(const omen_index *index) { return omen_index_dim(index); }
