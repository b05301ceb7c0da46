"""The fulfilment service: from a released order to a sealed, labelled parcel — fulfilment
orders per node, pick lists, pick confirmation and short picks, packing with scan
verification, cartonisation, packing slips, and the hand-off to shipping, 3PLs and dropship
suppliers."""
