#include "control/audit/audit.hpp"
