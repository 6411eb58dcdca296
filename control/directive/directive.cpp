#include "control/directive/directive.hpp"
