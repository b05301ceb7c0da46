"""The catalogue: the product master (SKUs and what allocation and orders need of them) and
the fulfilment nodes that hold stock (address, position, service regions, cost, bins), with
the `ProductChanged` events that tell other services what changed."""
