"""Documents of the floor: packing slips (invoices) per parcel, printable in bulk for a pick
list or wave, and pick lists with their barcode, as PDF."""
