/* Headers only; see include/CBench.h. */
