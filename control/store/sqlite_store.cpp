#include "control/store/store.hpp"
