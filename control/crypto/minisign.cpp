#include "control/crypto/minisign.hpp"
